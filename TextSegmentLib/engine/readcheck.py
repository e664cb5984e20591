"""Reads that cannot lie: a file must hold every voxel its header promises before SimpleITK reads it.

ITK's NIfTI reader fills a truncated file's missing voxels with zeros and reports nothing (a brain of 441 mL
instead of 1632), and its MetaImage reader reports a truncation as "No such file or directory". So before an image
file is read, :func:`check_image_file` refuses anything that is not a regular file (a FIFO would block the read
forever), and compares the bytes of voxel data the header promises with the bytes the file holds: gzip streams are
read to their end, which also checks their CRC and length. NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr with raw or
gzip data) and MetaImage (.mha, .mhd, raw or zlib data) are checked; other files are left to their readers.
"""

import gzip
import math
import os
import re
import stat
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Dict, Optional, Tuple, Union

from .errors import InputError

_CHUNK = 1 << 20
_NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                     "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                     "double"), 8),
}  # fmt: skip
_META_TYPES = {"CHAR": 1, "UCHAR": 1, "SHORT": 2, "USHORT": 2, "INT": 4, "UINT": 4, "LONG": 4, "ULONG": 4,
               "LONG_LONG": 8, "ULONG_LONG": 8, "FLOAT": 4, "DOUBLE": 8}  # fmt: skip


def _short(path: Path, promised: int, found: int, what: str = "voxel data") -> InputError:
    return InputError(
        f"{path} is truncated: its header promises {promised} bytes of {what} but the file holds {found}; the file "
        "was cut short (an interrupted copy or download, or a full disk). Copy or export it again"
    )


def check_regular_file(path: Union[str, Path]) -> os.stat_result:
    """The file's stat; InputError for anything but a non-empty regular file (FIFOs and devices are never opened)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"input {path} cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise InputError(f"{path} is {kind}, not an image file; give a NIfTI, NRRD, MHA file or a DICOM series folder")
    if st.st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); copy or export it again")
    return st


def _stream_length(fh: BinaryIO, path: Path, head_bytes: int = 0) -> Tuple[int, bytes]:
    """Read a stream to its end: (bytes read, the first ``head_bytes``); InputError for a damaged gzip stream."""
    total, head = 0, b""
    try:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                return total, head
            if len(head) < head_bytes:
                head += chunk[: head_bytes - len(head)]
            total += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(
            f"cannot read {path}: its compressed data is cut short or corrupt ({exc}); copy or export it again"
        ) from exc


def _zlib_length(fh: BinaryIO, path: Path, wbits: int) -> int:
    """Bytes of one zlib/gzip stream read from ``fh`` to its end marker; InputError when it ends before it."""
    inflate = zlib.decompressobj(wbits)
    total = 0
    try:
        while not inflate.eof:
            chunk = fh.read(_CHUNK)
            if not chunk:
                raise InputError(f"{path} is damaged: its compressed data is cut short; copy or export it again")
            total += len(inflate.decompress(chunk))
    except zlib.error as exc:
        raise InputError(f"{path} is damaged: its compressed data is corrupt ({exc}); copy or export it again") from exc
    return total


#: NIfTI datatype code -> (bytes per voxel, numpy type of a float type or None)
_NIFTI_TYPES = {2: (1, None), 4: (2, None), 8: (4, None), 16: (4, "f4"), 32: (8, "f4"), 64: (8, "f8"), 128: (3, None),
                256: (1, None), 512: (2, None), 768: (4, None), 1024: (8, None), 1280: (8, None), 1536: (16, None),
                1792: (16, "f8"), 2048: (32, None), 2304: (4, None)}  # fmt: skip


def _nifti_header(path: Path, head: bytes) -> Optional[Dict[str, Any]]:
    """The fields of a NIfTI-1 or NIfTI-2 header the checks need, or None when ``head`` is not a NIfTI header."""
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:
            f = "f"
            fields = dict(
                order=order, header=352, datatype=struct.unpack(order + "h", head[70:72])[0],
                dims=struct.unpack(order + "8h", head[40:56]), bitpix=struct.unpack(order + "h", head[72:74])[0],
                pixdim=struct.unpack(order + "8f", head[76:108]), offset=struct.unpack(order + "f", head[108:112])[0],
                slope=struct.unpack(order + "f", head[112:116])[0], inter=struct.unpack(order + "f", head[116:120])[0],
                codes=struct.unpack(order + "2h", head[252:256]), quatern=struct.unpack(order + "6f", head[256:280]),
                srow=struct.unpack(order + "12f", head[280:328]),
            )  # fmt: skip
        elif size == 540 and len(head) >= 540:
            f = "d"
            fields = dict(
                order=order, header=544, datatype=struct.unpack(order + "h", head[12:14])[0],
                dims=struct.unpack(order + "8q", head[16:80]), bitpix=struct.unpack(order + "h", head[14:16])[0],
                pixdim=struct.unpack(order + "8d", head[104:168]), offset=struct.unpack(order + "q", head[168:176])[0],
                slope=struct.unpack(order + "d", head[176:184])[0], inter=struct.unpack(order + "d", head[184:192])[0],
                codes=struct.unpack(order + "2i", head[344:352]), quatern=struct.unpack(order + "6d", head[352:400]),
                srow=struct.unpack(order + "12d", head[400:496]),
            )  # fmt: skip
        else:
            continue
        fields["float"] = f
        return fields
    return None


def _damaged(path: Path, what: str) -> InputError:
    return InputError(f"{path} has a damaged NIfTI header: {what}; the file cannot be read safely. Export it again")


def _nifti_geometry(path: Path, h: Dict[str, Any]) -> None:
    """Refuse a sheared sform (a grid that is not rectangular: volumes would be wrong) and NaN or infinite geometry.
    A qform that disagrees with the sform is not refused here: the reader follows the sform and says so
    (:func:`nifti_sform`, ``engine.io.follow_sform``)."""
    import numpy as np

    qcode, scode = h["codes"]
    srow = np.asarray(h["srow"], float).reshape(3, 4)
    if not np.isfinite(srow).all() and scode > 0:
        raise _damaged(path, "its sform holds NaN or infinite numbers")
    if scode > 0:
        m = srow[:, :3]
        norms = np.linalg.norm(m, axis=0)
        if (norms <= 0).any():
            raise _damaged(path, "its sform has an axis of length 0")
        cosines = (m / norms).T @ (m / norms)
        if np.abs(cosines - np.eye(3)).max() > 1e-3:
            angle = float(np.degrees(np.arccos(np.clip(np.abs(cosines[~np.eye(3, dtype=bool)]).max(), 0, 1))))
            raise InputError(
                f"{path} has a sheared voxel grid (its sform's axes meet at {angle:.1f} degrees, not 90): volumes and "
                "positions would be wrong. Resample it to a rectangular grid first (for example with Slicer's "
                "Resample Scalar Volume or FSL's flirt -applyxfm)"
            )
    if qcode > 0 and scode > 0:
        b, c, d, qx, qy, qz = (float(v) for v in h["quatern"])
        if not all(math.isfinite(v) for v in (b, c, d, qx, qy, qz)):
            raise _damaged(path, "its qform holds NaN or infinite numbers")


def nifti_sform(path: Union[str, Path]) -> Optional[Tuple[Any, Any, float]]:
    """``(sform 4x4 in LPS, qform 4x4 in LPS, how far apart in mm)`` of a NIfTI file whose header has both (codes > 0),
    else None. Most tools (FSL, nibabel, ANTs, FreeSurfer) follow the sform when the two disagree."""
    import numpy as np

    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            head = fh.read(544)
    except (OSError, EOFError, zlib.error):
        return None
    h = _nifti_header(path, head) if len(head) >= 348 else None
    if h is None or h["codes"][0] <= 0 or h["codes"][1] <= 0:
        return None
    b, c, d, qx, qy, qz = (float(v) for v in h["quatern"])
    pix = [float(v) for v in h["pixdim"]]
    a = math.sqrt(max(1.0 - (b * b + c * c + d * d), 0.0))
    rot = np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ])  # fmt: skip
    qform = np.eye(4)
    qform[:3, :3] = rot * np.array([pix[1], pix[2], (-1.0 if pix[0] < 0 else 1.0) * pix[3]])
    qform[:3, 3] = (qx, qy, qz)
    sform = np.eye(4)
    sform[:3, :] = np.asarray(h["srow"], float).reshape(3, 4)
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    sform, qform = ras_to_lps @ sform, ras_to_lps @ qform
    corners = np.array([[i, j, k, 1.0] for i in (0, max(h["dims"][1] - 1, 0)) for j in (0, max(h["dims"][2] - 1, 0))
                        for k in (0, max(h["dims"][3] - 1, 0))])  # fmt: skip
    apart = float(np.linalg.norm((corners @ sform.T - corners @ qform.T)[:, :3], axis=1).max())
    return sform, qform, apart


def _check_nifti(path: Path) -> None:
    """A NIfTI file: header consistent (datatype and bitpix, vox_offset, scaling, geometry), every voxel present,
    no NaN or infinite float voxels (ITK's reader would read them as numbers)."""
    import numpy as np

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        try:
            first = fh.read(_CHUNK)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputError(
                f"cannot read {path}: its compressed data is cut short or corrupt ({exc}); copy or export it again"
            ) from exc
        if len(first) < 348:
            raise _short(path, 348, len(first), "header")
        h = _nifti_header(path, first[:544])
        if h is None:
            _stream_length(fh, path)
            return  # not a NIfTI header: SimpleITK gives its own message
        dims, bitpix, datatype = h["dims"], h["bitpix"], h["datatype"]
        ndim = dims[0]
        if not 1 <= ndim <= 7 or bitpix <= 0 or any(d < 0 for d in dims[1 : ndim + 1]):
            _stream_length(fh, path)
            return
        if not math.isfinite(h["offset"]) or h["offset"] < 0:
            raise _damaged(path, f"its voxel data offset (vox_offset) is {h['offset']}")
        size, kind = _NIFTI_TYPES.get(datatype, (None, None))
        if size is not None and size * 8 != bitpix:
            raise _damaged(path, f"its datatype {datatype} has {size * 8} bits per voxel but bitpix says {bitpix}")
        for name in ("slope", "inter"):
            if not math.isfinite(h[name]):
                raise _damaged(path, f"its intensity scaling scl_{name} is {h[name]}")
        _nifti_geometry(path, h)
        count = 1
        for d in dims[1 : ndim + 1]:
            count *= max(int(d), 1)
        promised = count * bitpix // 8
        start = max(int(h["offset"]), h["header"])
        dtype = np.dtype(h["order"] + kind) if kind else None
        bad = 0
        total = len(first)
        data = first[start:]
        try:
            while True:  # the voxel data, checked chunk by chunk (a partial value waits for the next chunk)
                if dtype is not None and data:
                    usable = len(data) - len(data) % dtype.itemsize
                    values = np.frombuffer(data[:usable], dtype)
                    bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                    data = data[usable:]
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                data = data + chunk if dtype is not None else b""
        except (EOFError, OSError, zlib.error) as exc:
            raise InputError(
                f"cannot read {path}: its compressed data is cut short or corrupt ({exc}); copy or export it again"
            ) from exc
    found = max(total - start, 0)
    if found < promised:
        raise _short(path, promised, found)
    if bad:
        raise InputError(f"{path} has {bad} NaN or infinite voxels; replace them (for example with the minimum) first")


def _check_nrrd(path: Path) -> None:
    with open(path, "rb") as fh:
        data = fh.read(1 << 16)
    if not data.startswith(b"NRRD"):
        return
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None and not path.name.lower().endswith(".nhdr"):
        raise _short(path, 1, 0, "header (it has no end)")
    header = data[: match.start() if match else len(data)].decode("latin-1")
    fields: Dict[str, str] = {}
    for line in header.splitlines()[1:]:
        if line.startswith("#") or ":=" in line or ":" not in line:
            continue  # comments and key:=value metadata
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    size = _NRRD_TYPES.get(fields.get("type", "").lower())
    sizes = fields.get("sizes", "").split()
    encoding = fields.get("encoding", "raw").lower()
    if size is None or not sizes or not all(s.isdigit() for s in sizes) or encoding not in ("raw", "gz", "gzip"):
        return
    promised = size
    for s in sizes:
        promised *= int(s)
    datafile = fields.get("data file") or fields.get("datafile")
    if datafile:
        if datafile.split()[0].upper() == "LIST" or "%" in datafile:
            return
        source, start = path.parent / datafile, 0
        check_regular_file(source)
    else:
        source, start = path, (match.end() if match else len(data))
    skip = int(fields.get("byte skip", "0") or 0)
    with open(source, "rb") as fh:
        fh.seek(start)
        if encoding == "raw":
            if skip == -1:
                found = os.fstat(fh.fileno()).st_size - start
            else:
                found = os.fstat(fh.fileno()).st_size - start - skip
        else:
            found = _zlib_length(fh, source, 47)  # gzip or zlib header, detected
    if found < promised:
        raise _short(source, promised, max(found, 0))


def _check_metaimage(path: Path) -> None:
    with open(path, "rb") as fh:
        data = fh.read(1 << 16)
    fields: Dict[str, str] = {}
    offset = 0
    for raw_line in data.split(b"\n"):
        offset += len(raw_line) + 1
        line = raw_line.decode("latin-1").strip()
        if "=" not in line:
            continue
        key, value = (p.strip() for p in line.split("=", 1))
        fields[key.lower()] = value
        if key.lower() == "elementdatafile":
            break
    else:
        return  # no ElementDataFile line in the first 64 KiB: leave it to the reader
    dims = fields.get("dimsize", "").split()
    size = _META_TYPES.get(fields.get("elementtype", "").upper().replace("MET_", ""))
    channels = fields.get("elementnumberofchannels", "1")
    if size is None or not dims or not all(d.isdigit() for d in dims) or not channels.isdigit():
        return
    promised = size * int(channels)
    for d in dims:
        promised *= int(d)
    datafile = fields["elementdatafile"]
    if datafile.upper() == "LOCAL":
        source, start = path, offset
    elif datafile.upper().startswith("LIST") or "%" in datafile or " " in datafile:
        return
    else:
        source, start = path.parent / datafile, int(fields.get("headersize", "0") or 0)
        check_regular_file(source)
        start = max(start, 0)
    compressed = fields.get("compresseddata", "false").lower() == "true"
    with open(source, "rb") as fh:
        fh.seek(start)
        found = _zlib_length(fh, source, 47) if compressed else os.fstat(fh.fileno()).st_size - start
    if found < promised:
        raise _short(source, promised, max(found, 0))


def check_image_file(path: Union[str, Path], name: Optional[str] = None) -> None:
    """Refuse a file that is not a regular file or holds fewer voxel bytes than its header promises (InputError).

    Example:
        >>> import tempfile, numpy as np, SimpleITK as sitk
        >>> f = Path(tempfile.mkdtemp()) / "x.nii.gz"
        >>> sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.int16)), str(f))
        >>> check_image_file(f)
        >>> _ = f.write_bytes(f.read_bytes()[:-20])
        >>> try:
        ...     check_image_file(f)
        ... except InputError as exc:
        ...     print("cut short" in str(exc))
        True
    """
    path = Path(path)
    check_regular_file(path)
    lower = path.name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        _check_nifti(path)
    elif lower.endswith((".nrrd", ".nhdr")):
        _check_nrrd(path)
    elif lower.endswith((".mha", ".mhd")):
        _check_metaimage(path)
