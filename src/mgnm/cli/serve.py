"""``mgnm serve``: a run behind HTTP (see docs/serving.md)."""

from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-body-kb", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Largest request body accepted (larger: 413).")
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
@click.option("--access-log", is_flag=True, help="One line per request on stdout (time, "
              "client, request, status).")
@click.option("--token", envvar="MGNM_SERVE_TOKEN", metavar="TOKEN",
              help="Bearer token that writes (new and retired items, reload) need; also "
                   "from MGNM_SERVE_TOKEN. Required to serve writes beyond loopback.")
@click.option("--read-only", is_flag=True, help="Refuse every write (403).")
@click.option("--catalogue", type=click.Path(file_okay=False),
              help="Store of items added and retired [default: RUN_DIR/catalogue].")
def serve(run_dir, host, port, max_body_kb, data, access_log, token, read_only,
          catalogue) -> None:
    """Serve a run over HTTP (FastAPI + uvicorn; extra `serve`). See docs/serving.md."""
    from mgnm.serve import require_serve_extra

    require_serve_extra()
    from mgnm.serve.app import run_server

    run_server(run_dir, host, port, data=data, max_body=max_body_kb * 1024,
               access_log=access_log, token=token, read_only=read_only,
               catalogue=catalogue, echo=click.echo)


