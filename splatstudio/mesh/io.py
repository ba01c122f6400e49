"""Write textured meshes: binary glTF 2.0 (``.glb``, texture embedded as PNG) and Wavefront
OBJ + MTL + PNG.

Both files use glTF's axes, y up: ``(x, y, z)_file = (east, up, -north)`` for ENU input (the
sidecar's ``"RUB"`` convention), metres. Colours are the baked sRGB texture; the GLB
material is unlit (``KHR_materials_unlit``) because the texture already holds the shading
seen in the splat. Files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from .model import TexturedMesh

#: ENU -> glTF y-up (x east, y up, z south)
ENU_TO_YUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an ``[H, W, 3]`` uint8 RGB image (cv2)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 3])  # fmt: skip
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


_PNG_CACHE: dict[int, tuple[int, bytes]] = {}


def texture_png(mesh: TexturedMesh) -> bytes:
    """PNG bytes of `mesh`'s texture, encoded once per texture content (a 4096^2 texture
    takes ~1.2 s to encode; GLB and OBJ of the same mesh share it). The cache holds the
    last texture only and is keyed by its CRC-32, so a texture changed in place is
    encoded again."""
    import zlib

    tex = np.ascontiguousarray(mesh.texture)
    key = zlib.crc32(tex.data) ^ hash(tex.shape)
    hit = _PNG_CACHE.get(id(mesh))
    if hit is not None and hit[0] == key:
        return hit[1]
    data = encode_png(tex)
    _PNG_CACHE.clear()
    _PNG_CACHE[id(mesh)] = (key, data)
    return data


def _atomic_write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pad4(b: bytes, fill: bytes = b"\0") -> bytes:
    return b + fill * ((4 - len(b) % 4) % 4)


def write_glb(mesh: TexturedMesh, path: str | os.PathLike) -> list[Path]:
    """Write `mesh` as a binary glTF 2.0 file with its texture embedded.

    Returns:
        ``[]`` (no extra files).
    """
    path = Path(path)
    pos = (mesh.vertices @ ENU_TO_YUP.T).astype("<f4")
    uv = mesh.uvs.astype("<f4")
    idx = mesh.faces.astype("<u4").reshape(-1)
    png = texture_png(mesh)
    chunks, views, offset = [], [], 0
    for data, target in ((pos.tobytes(), 34962), (uv.tobytes(), 34962), (idx.tobytes(), 34963),
                         (png, None)):  # fmt: skip
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target:
            view["target"] = target
        views.append(view)
        data = _pad4(data)
        chunks.append(data)
        offset += len(data)
    gltf = {
        "asset": {"version": "2.0", "generator": "SplatStudio"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "splat_surface"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1},
                                    "indices": 2, "material": 0, "mode": 4}]}],
        "materials": [{
            "name": "baked",
            "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                                     "roughnessFactor": 1.0},
            "extensions": {"KHR_materials_unlit": {}},
            "doubleSided": True,
        }],
        "textures": [{"source": 0, "sampler": 0}],
        "samplers": [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
        "images": [{"bufferView": 3, "mimeType": "image/png"}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3",
             "min": pos.min(axis=0).tolist(), "max": pos.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(uv), "type": "VEC2"},
            {"bufferView": 2, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }  # fmt: skip
    js = _pad4(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
    binary = b"".join(chunks)
    total = 12 + 8 + len(js) + 8 + len(binary)
    data = (struct.pack("<III", 0x46546C67, 2, total) + struct.pack("<II", len(js), 0x4E4F534A)
            + js + struct.pack("<II", len(binary), 0x004E4942) + binary)  # fmt: skip
    _atomic_write(path, data)
    return []


def write_obj(mesh: TexturedMesh, path: str | os.PathLike) -> list[Path]:
    """Write `mesh` as ``<stem>.obj`` + ``<stem>.mtl`` + ``<stem>.png`` (``vt`` has v up, so
    it is ``1 - v`` of :attr:`TexturedMesh.uvs`).

    Returns:
        The extra files written: ``[mtl, png]``.
    """
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    mtl, png = path.with_name(stem + ".mtl"), path.with_name(stem + ".png")
    _atomic_write(png, texture_png(mesh))
    _atomic_write(mtl, (
        f"# SplatStudio\nnewmtl baked\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\n"
        f"map_Kd {png.name}\n"
    ))  # fmt: skip
    pos = mesh.vertices @ ENU_TO_YUP.T
    vt = np.column_stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]])
    f1 = mesh.faces + 1
    lines = [f"# SplatStudio: y up (x east, y up, z south), metres\nmtllib {mtl.name}\n"]
    # one %-format over the whole array: about twice as fast as an f-string per line
    lines.append(("v %.6f %.6f %.6f\n" * len(pos)) % tuple(pos.ravel().tolist()))
    lines.append(("vt %.6f %.6f\n" * len(vt)) % tuple(vt.ravel().tolist()))
    lines.append("usemtl baked\n")
    lines.append(("f %d/%d %d/%d %d/%d\n" * len(f1))
                 % tuple(np.repeat(f1, 2, axis=1).ravel().tolist()))  # fmt: skip
    _atomic_write(path, "".join(lines))
    return [mtl, png]
