"""Input validation shared by our dataparsers.

Every check raises :class:`DataValidationError` with ONE message that names the offending file and says what is
wrong (and, where we can guess, how to fix it). Dataparsers run these checks when they are set up, so bad input
fails at startup instead of as a ``KeyError`` or a NaN loss in the middle of training.

The module only needs numpy (torch tensors are accepted and converted; PIL is imported by the image checks when
they run), so it is cheap to import.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "DataValidationError",
    "load_json",
    "check_image_files",
    "check_images_decodable",
    "read_image_size",
    "check_poses",
    "check_intrinsics",
    "format_list",
    "check_frames",
]

PathLike = Union[str, Path]

MAX_LISTED = 5
"""How many offending items a message lists before it says "... and N more"."""


class DataValidationError(ValueError):
    """Raised when a scene's files are missing or malformed. The message names the file and the problem."""


def format_list(items: Sequence[Any], max_listed: int = MAX_LISTED) -> str:
    """``"a, b, c"`` for short lists, ``"a, b, c, ... (and 7 more)"`` for long ones."""
    items = [str(x) for x in items]
    shown = ", ".join(items[:max_listed])
    if len(items) > max_listed:
        shown += f", ... (and {len(items) - max_listed} more)"
    return shown


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def load_json(path: PathLike) -> Dict[str, Any]:
    """Load a JSON file whose top level must be an object.

    Raises:
        DataValidationError: the file is missing, is not valid JSON (the message gives line and column), or its
            top level is not an object.
    """
    path = Path(path)
    if not path.exists():
        hint = ""
        if not path.parent.exists():
            hint = f" (the directory {path.parent} does not exist either)"
        elif path.parent.is_dir():
            siblings = sorted(p.name for p in path.parent.glob("*.json"))
            hint = f" (JSON files in {path.parent}: {format_list(siblings) if siblings else 'none'})"
        raise DataValidationError(f"File not found: {path}{hint}")
    if not path.is_file():
        raise DataValidationError(f"Expected a JSON file but {path} is not a regular file")
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise DataValidationError(
            f"Invalid JSON in {path}: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except UnicodeDecodeError as e:
        raise DataValidationError(f"Invalid JSON in {path}: the file is not UTF-8 text ({e.reason})") from None
    if not isinstance(content, dict):
        raise DataValidationError(
            f"Expected a JSON object ({{...}}) at the top level of {path}, got {type(content).__name__}"
        )
    return content


def check_image_files(paths: Iterable[PathLike], source: PathLike, what: str = "image") -> List[Path]:
    """Check that every file in ``paths`` exists.

    Args:
        paths: the files to check.
        source: the file (transforms JSON, poses file, ...) that referenced them; named in the message.
        what: what the files are, for the message ("image", "mask", ...).

    Returns:
        The paths as ``Path`` objects.

    Raises:
        DataValidationError: listing the first few missing files and how many are missing in total.
    """
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataValidationError(
            f"{len(missing)} of {len(paths)} {what} files referenced by {source} do not exist: {format_list(missing)}"
        )
    return paths


def read_image_size(path: PathLike, source: PathLike, what: str = "image") -> Tuple[int, int]:
    """``(width, height)`` from an image file's header (nothing is decoded).

    Raises:
        DataValidationError: the header cannot be read, naming the file and ``source``.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # noqa: BLE001 - PIL raises many types for broken files
        raise DataValidationError(f"Cannot read {what} {path} (referenced by {source}): {e}") from None


def _jpeg_ends_with_eoi(path: Path) -> bool:
    """Whether a JPEG file ends with its end-of-image marker ``FF D9`` (trailing zero padding allowed)."""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64))
        return f.read().rstrip(b"\x00").endswith(b"\xff\xd9")


def _decode_problem(path: Path) -> Tuple[Optional[Tuple[int, int]], Optional[str]]:
    """``(size, None)`` when ``path`` decodes, ``(size or None, reason)`` when it does not. See
    :func:`check_images_decodable` for what is checked."""
    from PIL import Image

    size = None
    try:
        with Image.open(path) as im:
            size, fmt = im.size, im.format
            if fmt == "PNG":
                im.verify()  # walks every chunk and checks its CRC, without decompressing: catches truncation
                return size, None
            if fmt in ("JPEG", "MPO") and _jpeg_ends_with_eoi(path):
                return size, None
            im.load()  # other formats, and JPEGs without their end marker: decode, as nerfstudio will
            return size, None
    except Exception:  # noqa: BLE001 - the cheap check failed (or the header is broken): confirm by decoding
        pass
    try:
        with Image.open(path) as im:
            size = im.size
            im.load()
        return size, None  # damaged by PNG's standards (bad CRC, no IEND) but decodable: nerfstudio can use it
    except Exception as e:  # noqa: BLE001
        nbytes = path.stat().st_size if path.is_file() else 0
        return size, f"{e} (the file has {nbytes} bytes)"


def check_images_decodable(
    paths: Sequence[PathLike], source: PathLike, what: str = "image", hint: str = "", max_workers: int = 8
) -> List[Tuple[int, int]]:
    """Check that every image file in ``paths`` can be decoded, and return each one's ``(width, height)``.

    A full decode of every image at startup is slow for large scenes, so the check is the cheapest one that
    catches a truncated or damaged file (an interrupted copy or download, the common case):

    - PNG: ``Image.verify()``, which reads every chunk and checks its CRC and that the file ends with ``IEND``,
      without decompressing the pixels (about the cost of reading the file);
    - JPEG: the header is parsed and the file must end with the ``FF D9`` end-of-image marker (64 bytes read);
    - any other format, and a file that fails the cheap check: a full decode (``Image.load()``), which is what
      nerfstudio does when it loads the image. Only a failing full decode is an error, so a file that nerfstudio
      can load (a PNG without ``IEND``, a JPEG with trailing data) is never rejected.

    On 800x800 images this costs about 0.1 ms per file, against 4-6 ms for a full decode. Lists of more than 16
    files are checked in a pool of ``max_workers`` threads (file reads, CRCs and decoding release the GIL), which
    helps on slow disks. ``hint`` is appended to the message. Report missing files first with
    :func:`check_image_files`.

    Raises:
        DataValidationError: naming the first undecodable file (with PIL's reason and its size in bytes), how many
            of the files are affected, the ``source`` that referenced them and the hint.
    """
    paths = [Path(p) for p in paths]
    workers = min(max_workers, os.cpu_count() or 1) if len(paths) > 16 else 1
    if workers <= 1:
        results = [_decode_problem(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_decode_problem, paths))
    bad = [(p, reason) for p, (_, reason) in zip(paths, results) if reason is not None]
    if bad:
        (first, reason), others = bad[0], [p for p, _ in bad[1:]]
        also = f"; {len(bad)} of {len(paths)} {what} files are affected, also {format_list(others)}" if others else ""
        files, it = ("These files are", "them") if others else ("The file is", "it")
        raise DataValidationError(
            f"Cannot decode {what} {first} (referenced by {source}): {reason}{also}. {files} truncated or "
            f"corrupt (an interrupted copy or download?): copy or export {it} again{hint}"
        )
    return [size for size, _ in results]  # type: ignore[misc]


def _name(names: Optional[Sequence[Any]], i: int) -> str:
    if names is not None and i < len(names):
        return f"{i} ({names[i]})"
    return str(i)


def check_poses(
    camera_to_worlds: Any,
    source: PathLike,
    names: Optional[Sequence[Any]] = None,
    *,
    orthonormal_tol: float = 1e-2,
    what: str = "camera",
) -> np.ndarray:
    """Check camera-to-world matrices.

    Checks that the array has shape ``[N, 3, 4]`` or ``[N, 4, 4]``, that every entry is finite, that the bottom row
    of 4x4 matrices is ``[0, 0, 0, 1]`` and that each rotation block is orthonormal with determinant +1 (a rigid
    transform, no scale or mirroring baked in).

    Args:
        camera_to_worlds: array-like ``[N, 3, 4]`` or ``[N, 4, 4]`` (numpy, torch or nested lists).
        source: the file the poses come from; named in the message.
        names: optional per-pose names (image file names, frame file paths) used in messages.
        orthonormal_tol: tolerance on ``max |R^T R - I|`` and on ``|det R - 1|``.
        what: what a pose belongs to, for the message.

    Returns:
        The poses as a float64 numpy array.

    Raises:
        DataValidationError: naming the first bad pose (index and name) and the source file.
    """
    try:
        poses = _to_numpy(camera_to_worlds).astype(np.float64)
    except (TypeError, ValueError) as e:
        raise DataValidationError(f"Camera poses in {source} are not a numeric array: {e}") from None
    if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)):
        raise DataValidationError(
            f"Camera poses in {source} have shape {tuple(poses.shape)}; expected [N, 3, 4] or [N, 4, 4] "
            "camera-to-world matrices"
        )
    if poses.shape[0] == 0:
        raise DataValidationError(f"No camera poses in {source}")

    bad = ~np.isfinite(poses).all(axis=(1, 2))
    if bad.any():
        idx = np.flatnonzero(bad)
        listed = format_list([_name(names, i) for i in idx])
        raise DataValidationError(
            f"Non-finite (NaN or inf) camera pose in {source}: {what} {listed}"
            f" ({len(idx)} of {len(poses)} poses affected)"
        )

    if poses.shape[1] == 4:
        bottom_err = np.abs(poses[:, 3, :] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
        bad = np.flatnonzero(bottom_err > 1e-4)
        if len(bad):
            i = bad[0]
            raise DataValidationError(
                f"Camera pose {_name(names, i)} in {source} has bottom row {poses[i, 3].tolist()} instead of "
                "[0, 0, 0, 1]; the matrix may be transposed (translation in the last row instead of the last column)"
            )

    rot = poses[:, :3, :3]
    ortho_err = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rot)
    bad = np.flatnonzero((ortho_err > orthonormal_tol) | (np.abs(det - 1.0) > orthonormal_tol))
    if len(bad):
        i = bad[0]
        raise DataValidationError(
            f"Rotation part of camera pose {_name(names, i)} in {source} is not a rotation "
            f"(max |R^T R - I| = {ortho_err[i]:.3g}, det = {det[i]:.3g}); camera-to-world matrices must be rigid: "
            "orthonormal columns, determinant +1, no scale or mirroring"
            + (f" ({len(bad)} of {len(poses)} poses affected)" if len(bad) > 1 else "")
        )
    return poses


_POSITIVE = ("fx", "fy", "focal", "width", "height")
_FINITE_ONLY = ("cx", "cy")
_ANGLES = ("camera_angle_x", "camera_angle_y")


def check_intrinsics(
    source: PathLike,
    names: Optional[Sequence[Any]] = None,
    **params: Any,
) -> None:
    """Check camera intrinsics: focal lengths and image sizes positive and finite, principal points finite, field
    of view angles in (0, pi).

    Usage: ``check_intrinsics(path, names, fx=fx, fy=fy, cx=cx, cy=cy, width=w, height=h)`` or
    ``check_intrinsics(path, camera_angle_x=angle)``. Each value may be a scalar or an array (one per camera);
    ``None`` values are skipped. Accepted names: ``fx, fy, focal, width, height`` (> 0), ``cx, cy`` (finite),
    ``camera_angle_x, camera_angle_y`` (radians, in (0, pi)).

    Raises:
        DataValidationError: naming the parameter, the camera and the source file.
    """
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            raise DataValidationError(f"Camera intrinsic '{key}' in {source} must be a number, got {value!r}")
        try:
            arr = _to_numpy(value).astype(np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataValidationError(
                f"Camera intrinsic '{key}' in {source} must be a number, got {value!r}"
            ) from None
        if key in _POSITIVE:
            bad = ~(np.isfinite(arr) & (arr > 0))
            rule = "positive and finite"
        elif key in _FINITE_ONLY:
            bad = ~np.isfinite(arr)
            rule = "finite"
        elif key in _ANGLES:
            bad = ~(np.isfinite(arr) & (arr > 0) & (arr < math.pi))
            rule = "an angle in radians in (0, pi)"
        else:
            raise TypeError(f"check_intrinsics: unknown intrinsic parameter {key!r}")
        if bad.any():
            idx = np.flatnonzero(bad)
            where = ""
            if arr.size > 1:
                where = f" for camera {format_list([_name(names, i) for i in idx])}"
            raise DataValidationError(
                f"Camera intrinsic '{key}' in {source} must be {rule}, got {arr[idx[0]]!r}{where}"
            )


def check_frames(meta: Dict[str, Any], source: PathLike, empty_hint: str = "no images") -> Tuple[List[str], np.ndarray]:
    """Check the ``frames`` list of a transforms JSON (Blender, D-NeRF, nerfstudio and instant-ngp formats).

    Every frame must be an object with a string ``file_path`` and a rigid, finite 4x4 ``transform_matrix``
    (checked by :func:`check_poses`).

    Returns:
        The frames' ``file_path`` strings and their matrices ``[N, 4, 4]``.

    Raises:
        DataValidationError: naming ``source``, the frame and what is wrong with it.
    """
    if "frames" not in meta:
        raise DataValidationError(
            f"{source} has no 'frames' list (top-level keys: {format_list(sorted(meta)) or 'none'})"
        )
    frames = meta["frames"]
    if not isinstance(frames, list):
        raise DataValidationError(f"'frames' in {source} must be a list, got {type(frames).__name__}")
    if not frames:
        raise DataValidationError(f"'frames' in {source} is empty: {empty_hint}")
    file_paths: List[str] = []
    matrices = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DataValidationError(f"Frame {i} in {source} must be an object, got {type(frame).__name__}")
        missing = [k for k in ("file_path", "transform_matrix") if k not in frame]
        if missing:
            raise DataValidationError(
                f"Frame {i} in {source} has no {' and no '.join(repr(k) for k in missing)}"
                f" (keys: {format_list(sorted(frame)) or 'none'})"
            )
        if not isinstance(frame["file_path"], str):
            raise DataValidationError(
                f"'file_path' of frame {i} in {source} must be a string, got {frame['file_path']!r}"
            )
        try:
            matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataValidationError(
                f"'transform_matrix' of frame {i} ({frame['file_path']}) in {source} is not a numeric matrix"
            ) from None
        if matrix.shape != (4, 4):
            raise DataValidationError(
                f"'transform_matrix' of frame {i} ({frame['file_path']}) in {source} has shape {matrix.shape}; "
                "expected a 4x4 camera-to-world matrix"
            )
        file_paths.append(frame["file_path"])
        matrices.append(matrix)
    poses = np.stack(matrices)
    check_poses(poses, source=source, names=file_paths, what="frame")
    return file_paths, poses
