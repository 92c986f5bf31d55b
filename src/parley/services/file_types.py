"""Which files Parley accepts as case documents, judged by content as well as by name.

Accepted: PDF, images (PNG, JPEG, GIF, WebP, TIFF), office documents (Word, Excel,
PowerPoint, OpenDocument, RTF) and plain text / CSV. A declared type must agree with the
file's first bytes (a "PDF" that starts like a Windows program is refused), so a
borrower's attachment or an upload cannot smuggle an executable onto a case. Anything
that looks like a program (PE/ELF/Mach-O headers, scripts with #!, or a name ending
.exe, .js, .bat, ...) is refused whatever type it claims.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

MAX_DOCUMENT_BYTES = 25 * 1024 * 1024

# content type -> the magic kind its bytes must have (None: text, checked as text)
ALLOWED: dict[str, str | None] = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/tiff": "tiff",
    "application/msword": "ole",
    "application/vnd.ms-excel": "ole",
    "application/vnd.ms-powerpoint": "ole",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "zip",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "zip",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "zip",
    "application/vnd.oasis.opendocument.text": "zip",
    "application/vnd.oasis.opendocument.spreadsheet": "zip",
    "application/rtf": "rtf",
    "text/plain": None,
    "text/csv": None,
}
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "text/rtf": "application/rtf",
    "application/csv": "text/csv",
    "text/comma-separated-values": "text/csv",
    "application/x-pdf": "application/pdf",
}
_GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_EXECUTABLE_MAGIC = (
    b"MZ",  # Windows PE / DOS
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",  # Mach-O universal / Java class
    b"#!",
)
_EXECUTABLE_EXTENSIONS = frozenset(
    {
        "exe",
        "com",
        "bat",
        "cmd",
        "scr",
        "pif",
        "msi",
        "msp",
        "dll",
        "cpl",
        "jar",
        "js",
        "jse",
        "vbs",
        "vbe",
        "wsf",
        "wsh",
        "ps1",
        "psm1",
        "sh",
        "bash",
        "app",
        "apk",
        "hta",
        "lnk",
        "reg",
        "sys",
    }
)
_EXTENSION_TYPES = {
    "csv": "text/csv",
    "txt": "text/plain",
    "rtf": "application/rtf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
}


class UnsupportedFile(ValueError):
    """The file's type is not accepted (answer 415)."""


@dataclass(frozen=True, slots=True)
class FileType:
    content_type: str


def classify(file_name: str, declared: str | None, content: bytes) -> FileType:
    """The accepted content type of a file, or UnsupportedFile saying why not."""
    extension = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if extension in _EXECUTABLE_EXTENSIONS or content.startswith(_EXECUTABLE_MAGIC):
        raise UnsupportedFile("executable files and scripts are not accepted")
    kind = (declared or "").split(";", 1)[0].strip().lower()
    kind = _ALIASES.get(kind, kind)
    if kind in _GENERIC:
        kind = _EXTENSION_TYPES.get(extension) or (mimetypes.guess_type(file_name)[0] or "")
        kind = _ALIASES.get(kind, kind)
    if kind not in ALLOWED:
        raise UnsupportedFile(
            f"{kind or 'this file type'} is not accepted; send PDF, images, office "
            "documents, text or CSV"
        )
    expected = ALLOWED[kind]
    if expected is None:
        if not _is_text(content):
            raise UnsupportedFile(f"the file is declared {kind} but is not text")
    elif _magic(content) != expected:
        raise UnsupportedFile(f"the file's content does not match its type {kind}")
    return FileType(kind)


def _magic(content: bytes) -> str | None:
    head = content[:16]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    if head.startswith(b"{\\rtf"):
        return "rtf"
    return None


def _is_text(content: bytes) -> bool:
    sample = content[:65536]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        if exc.start < len(sample) - 4:
            try:
                sample.decode("cp1252")
            except UnicodeDecodeError:
                return False
    return True
