"""`emocloak serve`: the HTTP API (documented at /docs) and the page that uses it, served from the package.

Every action on the page is one of these endpoints. Request paths are looked up in
dictionaries (job ids, photo numbers, the page's three files); none is joined into a path.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import tempfile
import threading
import time
import webbrowser
import zipfile
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from PIL import Image
from starlette.middleware.trustedhost import TrustedHostMiddleware

from emocloak.data.images import load_rgb
from emocloak.errors import EmocloakError
from emocloak.labels import LABELS
from emocloak.protection import DEFAULT_METHOD, METHODS
from emocloak.recognizers.registry import DESCRIPTIONS, available, load_recognizer
from emocloak.web.jobs import DEFAULT_STRENGTH, STRENGTH_METHODS, STRENGTHS, Item, Job, Jobs, parse_options
from emocloak.web.readings import read_photo
from emocloak.web.uploads import BodyLimit, Upload, UploadError, check_upload, display_name

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
PAGE = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
HEARTBEAT_S = 1.0  # a job's snapshot at least this often while it runs: its bar and time left move on
MEDIA = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff"}


@dataclass(frozen=True)
class Settings:
    max_file_bytes: int = 25_000_000
    max_request_bytes: int = 200_000_000
    max_files: int = 50
    workers: int = 1
    allowed_hosts: tuple[str, ...] = LOOPBACK  # Host header check: a web page elsewhere cannot rebind to us


def create_app(settings: Settings = Settings()) -> FastAPI:
    """The app; its temporary folder and worker pool live from startup to shutdown."""
    page = {name: (resources.files("emocloak.web") / "static" / name).read_bytes() for name in PAGE}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one torch thread per photo being cloaked
        app.state.jobs = Jobs(Path(tempfile.mkdtemp(prefix="emocloak-serve-")), settings.workers)
        try:
            yield
        finally:
            await asyncio.to_thread(app.state.jobs.close)
            torch.set_num_threads(threads)

    app = FastAPI(
        title="emocloak",
        summary="Cloak face photos against emotion recognition and see what recognizers read; local only.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        message="this upload is {size}, over the {limit} limit per request: send fewer photos at a time",
    )

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(page["index.html"], media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in page:
            raise HTTPException(404, "no such file")
        return Response(page[name], media_type=PAGE[name])

    @app.get("/api/options", summary="Methods, strengths, labels, recognizers and limits the page offers")
    def options() -> dict:
        return {
            "methods": list(METHODS),
            "default_method": DEFAULT_METHOD,
            "strengths": list(STRENGTHS),
            "strength_methods": list(STRENGTH_METHODS),
            "labels": list(LABELS),
            "recognizers": [{"name": n, "description": DESCRIPTIONS.get(n, "")} for n in available()],
            "default_strength": DEFAULT_STRENGTH,
            "local_only": "*" not in settings.allowed_hosts,
            "limits": {
                "file_bytes": settings.max_file_bytes,
                "request_bytes": settings.max_request_bytes,
                "files": settings.max_files,
            },
        }

    def uploads(files: list[UploadFile]) -> list[Upload | UploadError]:
        if len(files) > settings.max_files:
            raise HTTPException(413, f"{len(files)} photos in one request; the limit is {settings.max_files}")
        checked: list[Upload | UploadError] = []
        for f in files:
            name = display_name(f.filename)
            try:
                checked.append(check_upload(name, f.file.read(settings.max_file_bytes + 1), settings.max_file_bytes))
            except UploadError as exc:
                checked.append(exc)
        return checked

    @app.post("/api/jobs", status_code=202, summary="Upload photos and queue them for cloaking")
    def create_job(
        request: Request,
        files: Annotated[list[UploadFile], File(description="One or more photos (JPEG, PNG, WebP, HEIC, ...)")],
        method: Annotated[str, Form(description=f"One of: {', '.join(METHODS)}")] = DEFAULT_METHOD,
        strength: Annotated[
            str, Form(description=f"One of {', '.join(STRENGTHS)}, for {', '.join(STRENGTH_METHODS)}")
        ] = DEFAULT_STRENGTH,
        target: Annotated[str | None, Form(description="Make faces read as this emotion (empty: any other)")] = None,
        recognizers: Annotated[
            str, Form(description="Comma-separated recognizers the cloak aims at [the method's]")
        ] = "",
        readers: Annotated[str, Form(description="Comma-separated recognizers whose readings are shown [all]")] = "",
        seed: Annotated[int, Form()] = 0,
    ) -> dict:
        """Bad files are not an error: they come back as failed photos with a message; the rest are queued."""
        try:
            opts = parse_options(method, strength, target, recognizers, readers, seed)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        jobs: Jobs = request.app.state.jobs
        return jobs.snapshot(jobs.submit(opts, uploads(files)))

    @app.get("/api/jobs", summary="All jobs of this server")
    def list_jobs(request: Request) -> list[dict]:
        jobs: Jobs = request.app.state.jobs
        return [jobs.snapshot(j) for j in list(jobs.jobs.values())]

    @app.get("/api/jobs/{job_id}", summary="A job's photos: status, progress, queue position, results")
    def get_job(job_id: str, request: Request) -> dict:
        jobs: Jobs = request.app.state.jobs
        return jobs.snapshot(_job(jobs, job_id))

    @app.delete("/api/jobs/{job_id}", status_code=204, summary="Drop a job and delete its files")
    def delete_job(job_id: str, request: Request) -> Response:
        jobs: Jobs = request.app.state.jobs
        _job(jobs, job_id)
        jobs.delete(job_id)
        return Response(status_code=204)

    @app.get(
        "/api/jobs/{job_id}/events",
        summary="Server-sent events: the job's snapshot each time anything changes (and each second: time left "
        "moves), until it is finished",
        response_class=StreamingResponse,
    )
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        jobs: Jobs = request.app.state.jobs
        job = _job(jobs, job_id)

        async def stream():
            seen, sent = -1, 0.0
            while not await request.is_disconnected():
                if jobs.version != seen or time.monotonic() - sent >= HEARTBEAT_S:
                    snap = jobs.snapshot(job)
                    seen, sent = snap["version"], time.monotonic()
                    yield f"event: job\ndata: {json.dumps(snap)}\n\n"
                    if snap["finished"]:
                        return
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    def view(kind: str) -> Callable[[str, int, Request], FileResponse]:
        def endpoint(job_id: str, index: int, request: Request) -> FileResponse:
            path = _done(request.app.state.jobs, job_id, index).files[kind]
            return FileResponse(path, media_type=MEDIA.get(path.suffix, "application/octet-stream"))

        return endpoint

    for kind in ("original", "cloaked"):
        app.get(
            f"/api/jobs/{{job_id}}/photos/{{index}}/{kind}",
            summary=f"The {kind} photo as the browser shows it (PNG where its format is not shown by browsers)",
            response_class=FileResponse,
        )(view(kind))

    @app.get("/api/jobs/{job_id}/photos/{index}/difference", summary="|cloaked - original| times gain, as PNG")
    def difference(
        job_id: str, index: int, request: Request, gain: Annotated[int, Query(ge=1, le=100)] = 10
    ) -> Response:
        item = _done(request.app.state.jobs, job_id, index)
        a, b = load_rgb(item.files["input"]), load_rgb(item.files["output"])
        diff = np.clip(np.abs(a.astype(np.int16) - b.astype(np.int16)) * gain, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(diff).save(buf, "PNG", compress_level=1)
        return Response(buf.getvalue(), media_type="image/png")

    @app.get("/api/jobs/{job_id}/photos/{index}/download", summary="The cloaked photo as a file to keep")
    def download(job_id: str, index: int, request: Request) -> FileResponse:
        item = _done(request.app.state.jobs, job_id, index)
        path = item.files["output"]
        media = MEDIA.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media, filename=item.result["download"])

    @app.get("/api/jobs/{job_id}/photos/{index}/sidecar", summary="The photo's sidecar: method, readings, quality")
    def sidecar(job_id: str, index: int, request: Request) -> JSONResponse:
        item = _done(request.app.state.jobs, job_id, index)
        return JSONResponse(json.loads(item.files["sidecar"].read_text()))

    @app.get("/api/jobs/{job_id}/zip", summary="Every cloaked photo of the job with its JSON sidecar, zipped")
    def zip_job(job_id: str, request: Request) -> FileResponse:
        jobs: Jobs = request.app.state.jobs
        job = _job(jobs, job_id)
        done = [i for i in job.items if i.status == "done"]
        if not done:
            raise HTTPException(404, "no cloaked photos in this job yet")
        path = jobs.root / job.id / "photos.zip"
        _write_zip(path, done)
        return FileResponse(path, media_type="application/zip", filename="emocloak-cloaked.zip")

    @app.post("/api/read", summary="Read the emotion of every face in photos, without cloaking (as `predict`)")
    def read(
        files: Annotated[list[UploadFile], File(description="One or more photos")],
        readers: Annotated[str, Form(description="Comma-separated recognizers [all]")] = "",
    ) -> list[dict]:
        """Nothing is stored: each photo is read in memory and dropped."""
        try:
            names = parse_options(readers=readers).readers
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        recs = [load_recognizer(n) for n in names]
        out = []
        for up in uploads(files):
            if isinstance(up, UploadError):
                out.append({"name": up.name, "error": str(up)})
                continue
            rgb = load_rgb(up.data)
            faces = read_photo(rgb, recs)
            h, w = rgb.shape[:2]
            error = None if faces else f"{up.name}: no face found"
            out.append({"name": up.name, "width": w, "height": h, "faces": faces, "error": error})
        return out

    return app


def _job(jobs: Jobs, job_id: str) -> Job:
    try:
        return jobs.get(job_id)
    except KeyError:
        raise HTTPException(404, "no such job (jobs end when the server stops)") from None


def _done(jobs: Jobs, job_id: str, index: int) -> Item:
    job = _job(jobs, job_id)
    if not 0 <= index < len(job.items):
        raise HTTPException(404, "no such photo in this job")
    item = job.items[index]
    if item.status != "done":
        raise HTTPException(409, f"{item.name} is {item.status}" + (f": {item.error}" if item.error else ""))
    return item


def _write_zip(path: Path, items: list[Item]) -> None:
    """The job's cloaked photos under their download names (made unique) with NAME.json sidecars."""
    used: set[str] = set()
    with zipfile.ZipFile(path, "w") as z:
        for item in items:
            name, n = item.result["download"], 1
            while name in used:
                n += 1
                stem, _, ext = item.result["download"].rpartition(".cloaked")
                name = f"{stem}-{n}.cloaked{ext}"
            used.add(name)
            z.write(item.files["output"], name)
            z.write(item.files["sidecar"], name + ".json", zipfile.ZIP_DEFLATED)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = False,
    workers: int | None = None,
    say: Callable[[str], None] = lambda m: print(m, flush=True),
) -> None:
    """Run the app until Ctrl+C; says where it listens and who can reach it."""
    import uvicorn

    workers = workers or max(1, min(4, (os.cpu_count() or 1) // 2))
    local = host in LOOPBACK
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "::1": "[::1]"}.get(host, host)  # an address a browser opens
    url = f"http://{shown}:{port}/"
    app = create_app(Settings(workers=workers, allowed_hosts=LOOPBACK if local else ("*",)))
    if local:
        say(f"listening on {host} only: no other computer can reach it")
    else:
        say(f"WARNING: listening on {host}: anyone who can reach this machine can upload photos to it")
    say(f"{workers} photo(s) cloaked at a time; uploads and results are deleted when the server stops (Ctrl+C)")
    say(f"emocloak web app: {url}  (API docs: {url}docs)")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EmocloakError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from exc
    return sock
