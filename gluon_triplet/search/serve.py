"""The web service of ``gluon-triplet serve``: a Starlette app over a :class:`SearchService`.

::

    app = create_app("fashion-index")            # exports INDEX/onnx first if it is missing
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints: ``GET /`` (the page), ``GET /health``, ``POST /search?k=K`` (multipart field
``image``), ``GET /items/{id}/thumbnail``, ``GET /items/{id}/image``. Every error is JSON
``{"error": "..."}`` with a 4xx status (500 for a bug), and the server keeps serving.
Starlette, uvicorn and python-multipart are the ``serve`` extra; MXNet is not imported to
answer a request.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from typing import Any, Callable, Dict, Optional, Tuple

from ..data.headers import MAX_PIXELS
from ..errors import ImageFileError
from ..optional import require

__all__ = [
    "DEFAULT_MAX_UPLOAD_MB",
    "ENVIRON",
    "STATIC",
    "app_from_environ",
    "build_app",
    "create_app",
]

logger = logging.getLogger("gluon_triplet")

#: Largest accepted upload, in MiB.
DEFAULT_MAX_UPLOAD_MB = 10.0
#: The page's files.
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: Environment variable that carries :func:`create_app`'s arguments to uvicorn's workers.
ENVIRON = "GLUON_TRIPLET_SERVE"
_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the picture


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _frameworks():
    feature = "gluon-triplet serve"
    require("python_multipart", feature)  # Starlette parses forms with it
    return require("starlette", feature), require("uvicorn", feature)


def create_app(
    index_dir: str,
    *,
    export_dir: Optional[str] = None,
    run_dir: Optional[str] = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    token: Optional[str] = None,
    max_pixels: int = MAX_PIXELS,
):
    """The ASGI app serving an index (see the module's docstring).

    Parameters
    ----------
    index_dir : str
        Written by ``gluon-triplet index``.
    export_dir : str, optional
        An ONNX export of the index's run (default ``INDEX_DIR/onnx``, exported there
        from the run when missing: the one step that loads MXNet).
    run_dir : str, optional
        The run to export, when it moved since indexing.
    max_upload_mb : float
        Larger uploads get 413.
    token : str, optional
        When given, every endpoint but the page needs ``Authorization: Bearer <token>``.
    max_pixels : int
        Pictures with more pixels get 400, checked from the header before decoding.
    """
    _frameworks()
    from .service import SearchService, ensure_export

    export_dir = ensure_export(index_dir, export_dir, run_dir)
    service = SearchService(index_dir, export_dir, max_pixels=max_pixels)
    return build_app(service, int(max_upload_mb * 2**20), token)


def app_from_environ():
    """:func:`create_app` with the keyword arguments in ``$GLUON_TRIPLET_SERVE`` (JSON), for
    uvicorn's worker processes (``uvicorn.run("...:app_from_environ", factory=True)``)."""
    kwargs = json.loads(os.environ[ENVIRON])
    return create_app(kwargs.pop("index_dir"), **kwargs)


def _token_ok(request, token: Optional[str]) -> bool:
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def build_app(service: Any, max_upload_bytes: int, token: Optional[str] = None):
    """The Starlette app over a ready :class:`~gluon_triplet.search.service.SearchService`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def guarded(handler: Callable) -> Callable:
        async def endpoint(request: Request) -> Response:
            if not _token_ok(request, token):
                return JSONResponse(
                    {"error": "this server needs a token: Authorization: Bearer <token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                return await handler(request)
            except _Refused as e:
                return error(e.status, str(e))
            except ImageFileError as e:
                return error(400, str(e))
            except LookupError as e:
                return error(404, str(e))
            except PermissionError as e:
                return error(403, str(e))

        return endpoint

    async def health(request: Request) -> Response:
        return JSONResponse(service.health())

    async def search(request: Request) -> Response:
        k = _k(request.query_params.get("k", "10"), len(service.index))
        data, name = await _upload(request, max_upload_bytes)
        return JSONResponse(await run_in_threadpool(service.search, data, k, name))

    async def thumbnail(request: Request) -> Response:
        item = request.path_params["item"]
        png = await run_in_threadpool(service.pictures.thumbnail, item)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def picture(request: Request) -> Response:
        item = request.path_params["item"]
        data, kind = await run_in_threadpool(service.pictures.picture, item)
        return Response(data, media_type=kind, headers={"Cache-Control": "max-age=3600"})

    async def page(request: Request) -> Response:
        return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return error(status, str(getattr(exc, "detail", "")) or "error")

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("%s %s failed: %s: %s", request.method, request.url.path,
                     type(exc).__name__, exc)  # fmt: skip
        return error(500, f"internal error ({type(exc).__name__}); the server log has more")

    routes = [
        Route("/", page),
        Route("/health", guarded(health)),
        Route("/search", guarded(search), methods=["POST"]),
        Route("/items/{item:int}/thumbnail", guarded(thumbnail)),
        Route("/items/{item:int}/image", guarded(picture)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: Dict[Any, Callable] = {HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.service = service
    return app


def _k(text: str, size: int) -> int:
    from .service import MAX_K

    top = min(size, MAX_K)
    try:
        k = int(text)
    except ValueError:
        raise _Refused(400, f"k must be an integer from 1 to {top}, got {text!r}") from None
    if not 1 <= k <= top:
        raise _Refused(400, f"k must be from 1 to {top} (the index has {size} items), got {k}")
    return k


def _too_large(limit: int) -> str:
    return f"the upload is larger than the limit of {limit / 2**20:g} MiB (--max-upload-mb)"


async def _upload(request: Any, limit: int) -> Tuple[bytes, str]:
    """``(bytes, file name)`` of the ``image`` file of a multipart form, its body read up to
    ``limit`` (413 past it)."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise _Refused(413, _too_large(limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit + _MULTIPART_SLACK:
            raise _Refused(413, _too_large(limit))
        chunks.append(chunk)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
    try:
        upload = form.get("image")
        if upload is None:
            raise _Refused(
                422, "no picture: send it as the multipart form field 'image' (curl -F image=@FILE)"
            )
        if not isinstance(upload, UploadFile):
            raise _Refused(422, "the form field 'image' must be a file, not text")
        data = await upload.read()
        name = upload.filename or "upload"
    finally:
        await form.close()
    if len(data) > limit:
        raise _Refused(413, _too_large(limit))
    if not data:
        raise _Refused(400, "the uploaded file 'image' is empty")
    return data, name
