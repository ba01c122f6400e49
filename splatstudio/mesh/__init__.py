"""Textured meshes from gaussian splats: surface, UV atlas, texture bake, GLB/OBJ files.

Pipeline (:func:`build_textured_mesh`): the splat is rendered (colour, expected depth, alpha)
from the capture's cameras when known, else from a ring of virtual views (:mod:`.bake`); the
surface is a TSDF fusion of those depth maps (default) or screened Poisson on the opaque
gaussians' centres with normals (:mod:`.surface`, open3d); quadric decimation to a face budget
(fast-simplification), a UV atlas by xatlas (:mod:`.uv`), then a texture baked by projecting
every texel into the renders with a depth test (:mod:`.bake`); seams are dilated. :mod:`.io`
writes binary glTF (texture embedded) and OBJ + MTL + PNG; :mod:`.quality` measures a mesh
against the splat from other views.

Frames and units: vertices are in the splat's frame (ENU metres for SplatStudio scenes: x
east, y north, z up); files are written in glTF's y-up axes (x east, y up, z south).

Importing this package imports numpy only; open3d, xatlas, scipy, cv2 and torch are imported
when a mesh is built.
"""

from .io import write_glb, write_obj
from .model import MeshOptions, TexturedMesh
from .pipeline import build_textured_mesh

__all__ = [
    "MeshOptions",
    "TexturedMesh",
    "build_textured_mesh",
    "write_glb",
    "write_obj",
]
