"""Compression Explorer: ``python app.py`` serves the Gradio app at http://127.0.0.1:7860.

Environment: ``EXPLORER_HOST`` / ``EXPLORER_PORT`` change where it listens (127.0.0.1:7860 by
default; a Hugging Face Space sets ``GRADIO_SERVER_NAME``), ``EXPLORER_RUNS`` the runs folder.
"""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    """Build the app and serve it through Gradio's queue."""
    from explorer.paths import cache_root
    from explorer.ui import build_app

    shared = Path(__file__).resolve().parent.parent / "shared" / "data"
    app = build_app(shared_data=str(shared) if shared.exists() else None)
    from explorer.backend.pareto import pareto_view

    pareto_view("rotten_tomatoes")  # the front a new page opens with, drawn once now (plotly's first is slow)
    downloads = cache_root() / "downloads"  # CSVs and run zips offered for download (nothing else is served)
    downloads.mkdir(parents=True, exist_ok=True)
    # Quick, read-only requests (Pareto, run lists, examples, plans) of up to 8 sessions run at once; the
    # heavy ones have their own limits (one prune or Start here, one EFTNAS training, one estimate, and
    # generations one at a time in compare.TURNS).
    app.queue(default_concurrency_limit=8).launch(
        server_name=os.environ.get("EXPLORER_HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")),
        server_port=int(os.environ.get("EXPLORER_PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))),
        allowed_paths=[str(downloads)])


if __name__ == "__main__":
    main()
