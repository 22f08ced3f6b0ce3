"""A local HTTP server on 127.0.0.1 with EMDB- and EMPIAR-like layouts, for the fetch tests.

It serves a folder with a gzipped 12³ map at the EMDB path of EMD-8511 and, at the EMPIAR-10081
path, a RELION 3.0 particle STAR (no pixel-size column, as older depositions) whose image names
point at three 4-image stacks. It records every request path and can cut chosen responses half
way (full Content-Length announced, half the body sent, connection closed).
"""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAP_PATH = "pub/databases/emdb/structures/EMD-8511/map/emd_8511.map.gz"
EMPIAR_ROOT = "empiar/world_availability/10081/data"
STAR_PATH = f"{EMPIAR_ROOT}/Particles/micrographs/data.star"
MAP_BOX, MAP_PIXEL_A = 12, 2.5
STACK_BOX, STACK_PIXEL_A, PER_STACK, N_STACKS = 16, 1.5, 4, 3


@dataclass
class Served:
    """The running server: its ``url``, the served ``root``, the request log and the paths
    whose next response is cut half way."""

    url: str
    root: Path
    volume: np.ndarray
    images: np.ndarray  # (N_STACKS * PER_STACK, box, box), in STAR order
    requests: list[str] = field(default_factory=list)
    cut_next: set[str] = field(default_factory=set)

    def requested(self, suffix: str) -> int:
        return sum(path.endswith(suffix) for path in self.requests)


def build_tree(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Write the served files under ``root``; return the map and the particle images."""
    from cryodiff.io.mrc import write_map, write_stack

    rng = np.random.default_rng(0)
    volume = rng.standard_normal((MAP_BOX,) * 3).astype(np.float32)
    plain = root / "work" / "emd_8511.map"
    plain.parent.mkdir(parents=True)
    write_map(plain, volume, MAP_PIXEL_A)
    (root / MAP_PATH).parent.mkdir(parents=True)
    (root / MAP_PATH).write_bytes(gzip.compress(plain.read_bytes()))

    images = rng.standard_normal((N_STACKS * PER_STACK, STACK_BOX, STACK_BOX)).astype(np.float32)
    micrographs = root / EMPIAR_ROOT / "Particles" / "micrographs"
    rows = []
    for k in range(N_STACKS):
        name = f"Particles/micrographs/mic_{k + 1:03d}_DW.mrcs"
        write_stack(root / EMPIAR_ROOT / name, images[k * PER_STACK:(k + 1) * PER_STACK],
                    STACK_PIXEL_A)
        rows += [f"{i + 1:06d}@{name} {12000 + 100 * (k * PER_STACK + i)}.0 11800.0 12.5 "
                 "300.0 2.7 0.1" for i in range(PER_STACK)]
    header = ["rlnImageName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage",
              "rlnSphericalAberration", "rlnAmplitudeContrast"]
    micrographs.mkdir(parents=True, exist_ok=True)
    (micrographs / "data.star").write_text(
        "\ndata_\n\nloop_\n" + "".join(f"_{c} #{i + 1}\n" for i, c in enumerate(header))
        + "\n".join(rows) + "\n")
    return volume, images


def start(root: Path) -> tuple[Served, http.server.ThreadingHTTPServer]:
    """Serve ``root`` (after :func:`build_tree`) on 127.0.0.1 in a daemon thread."""
    volume, images = build_tree(root)
    served = Served(url="", root=root, volume=volume, images=images)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            served.requests.append(path)
            if path in served.cut_next:
                served.cut_next.discard(path)
                body = (root / path).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return served, server


def closed_port() -> int:
    """A local port nothing listens on: fetching from it fails at once, offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(root: Path) -> Iterator[Served]:
    """Generator for a module-scoped fixture: serve ``root`` until the module's tests end."""
    served, httpd = start(root)
    yield served
    httpd.shutdown()
    httpd.server_close()
