"""Executes notebooks and writes them as standalone HTML with their outputs (no nbconvert needed).

The notebooks are committed without outputs (``tests/notebooks_test.py`` checks it); this renders
what a reader would see, figures included, into ``docs/notebooks/``:

    PYTHONPATH=. .venv/bin/python tools/render_notebooks.py notebooks/04_your_own_csv.ipynb

Runs in a fresh kernel of this Python from the repository root, with ``PI_NOTEBOOK_SMALL=1`` unless
the environment sets it.
"""

import base64
import html
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KERNEL = "purchase-intent-render"
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
         "pre{background:#f6f8fa;padding:.6em .8em;overflow-x:auto;font-size:13px}"
         ".in pre{border-left:3px solid #4a7bd0}.out pre{background:#fff;border-left:3px solid #bbb}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:2px 6px}img{max-width:100%}.prompt{color:#888;font-size:12px}")


def _kernel_env() -> dict:
    spec_root = Path(tempfile.mkdtemp(prefix="pi-kernels-"))
    spec = spec_root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "purchase_intent", "language": "python"}))
    os.environ["JUPYTER_PATH"] = str(spec_root)
    os.environ.setdefault("PI_NOTEBOOK_SMALL", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    os.environ.pop("MPLBACKEND", None)
    return os.environ


def _output_html(out) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        if out.get("name") == "stderr":  # logs and progress bars: not what a reader needs
            return ""
        return f"<div class='out'><pre>{html.escape(out['text'])}</pre></div>"
    if kind == "error":
        return f"<div class='out'><pre>{html.escape(out['ename'] + ': ' + out['evalue'])}</pre></div>"
    data = out.get("data", {})
    if "image/png" in data:
        return f"<div class='out'><img src='data:image/png;base64,{data['image/png']}'></div>"
    if "text/html" in data:
        return f"<div class='out'>{data['text/html']}</div>"
    if "text/markdown" in data:
        import markdown

        return f"<div class='out'>{markdown.markdown(data['text/markdown'], extensions=['tables'])}</div>"
    if "text/plain" in data:
        return f"<div class='out'><pre>{html.escape(data['text/plain'])}</pre></div>"
    return ""


def to_html(nb, title: str) -> str:
    import markdown

    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>"]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(markdown.markdown(cell.source, extensions=["tables", "fenced_code"]))
        elif cell.cell_type == "code":
            parts.append(f"<div class='in'><span class='prompt'>In [{cell.get('execution_count') or ' '}]:"
                         f"</span><pre>{html.escape(cell.source)}</pre></div>")
            parts += [_output_html(o) for o in cell.get("outputs", [])]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render(path: Path, out_dir: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name=KERNEL, resources={"metadata": {"path": str(REPO)}}).execute()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / (path.stem + ".html")
    out.write_text(to_html(nb, path.stem))
    print(f"{path} -> {out} ({time.perf_counter() - t0:.0f} s, {out.stat().st_size / 1024:.0f} KB)")
    return out


if __name__ == "__main__":
    _kernel_env()
    paths = [Path(p) for p in sys.argv[1:]] or sorted((REPO / "notebooks").glob("*.ipynb"))
    for p in paths:
        render(p, REPO / "docs" / "notebooks")
