"""Write the RFC 4475 torture messages as .dat files in this folder.

Two sources, in order of preference:

* ``--rfc PATH``: the text of RFC 4475 itself.  Its Appendix A holds a base64-encoded,
  gzip-compressed tar archive of every message, bit-exact.  This decodes it and writes
  each ``*.dat`` member here.  Use this whenever the RFC text is at hand; it supersedes
  the transcription.
* default: ``messages.txt`` beside this script, a transcription in the RFC's own
  notation (section 2: CRLF line ends, ``<hex>`` octets, ``<allOneLine>`` joins).

``--check`` writes nothing and exits non-zero when a file on disk differs from what
the chosen source produces.  ``--sums`` prints the SHA-256 of every file (for README.md).

Standard library only, so it runs from a bare checkout:
    python tests/vectors/rfc4475/extract.py [--rfc rfc4475.txt] [--check] [--sums]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRANSCRIPTION = HERE / "messages.txt"

_HEX = re.compile(r"<hex>(.*?)</hex>", re.DOTALL)
_ONE_LINE = re.compile(r"<allOneLine>\n(.*?)\n</allOneLine>", re.DOTALL)
_B64_LINE = re.compile(r"^\s*([A-Za-z0-9+/]{4,}={0,2})\s*$")


def render(text: str) -> bytes:
    """Turn one message in RFC 4475 section 2 notation into its wire octets."""
    text = _ONE_LINE.sub(lambda m: m.group(1).replace("\n", ""), text)
    out = bytearray()
    pos = 0
    for m in _HEX.finditer(text):
        out += text[pos : m.start()].replace("\n", "\r\n").encode("utf-8")
        out += binascii.unhexlify(re.sub(r"\s+", "", m.group(1)))
        pos = m.end()
    out += text[pos:].replace("\n", "\r\n").encode("utf-8")
    return bytes(out)


def from_transcription(path: Path = TRANSCRIPTION) -> dict[str, bytes]:
    """Parse messages.txt into {file name: octets}."""
    messages: dict[str, bytes] = {}
    name: str | None = None
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").split("\n"):
        if name is None:
            if raw.startswith("### ") and raw.endswith(".dat"):
                name, lines = raw[4:].strip(), []
            elif raw.strip() and not raw.startswith("#"):
                raise ValueError(f"text outside a message: {raw!r}")
        elif raw == "### end":
            messages[name] = render("".join(line + "\n" for line in lines))
            name = None
        else:
            lines.append(raw)
    if name is not None:
        raise ValueError(f"{name} has no '### end'")
    return messages


def from_rfc(path: Path) -> dict[str, bytes]:
    """Decode Appendix A of the RFC text: base64 -> gzip -> tar -> {name: octets}."""
    text = path.read_text(encoding="ascii", errors="replace")
    start = text.find("Bit-Exact Archive")
    if start < 0:
        raise ValueError("no 'Bit-Exact Archive' appendix in that file")
    chunks: list[str] = []
    started = False
    for line in text[start:].splitlines():
        m = _B64_LINE.match(line)
        if m and (started or m.group(1).startswith("H4sI")):  # gzip magic, base64
            started = True
            chunks.append(m.group(1))
        elif started and line.strip() and not _is_page_furniture(line):
            break
    archive = gzip.decompress(base64.b64decode("".join(chunks)))
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".dat"):
                data = tar.extractfile(member)
                assert data is not None
                out[Path(member.name).name] = data.read()
    return out


def _is_page_furniture(line: str) -> bool:
    # RFC page footers/headers interrupt the base64 block.
    return bool(re.search(r"\[Page \d+\]$|^RFC 4475\s", line.strip()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rfc", type=Path, help="RFC 4475 text; decode its Appendix A archive")
    ap.add_argument("--check", action="store_true", help="compare, write nothing")
    ap.add_argument("--sums", action="store_true", help="print SHA-256 of each file")
    args = ap.parse_args(argv)

    messages = from_rfc(args.rfc) if args.rfc else from_transcription()
    status = 0
    for name, data in sorted(messages.items()):
        target = HERE / name
        if args.check:
            if not target.exists() or target.read_bytes() != data:
                print(f"DIFFERS: {name}", file=sys.stderr)
                status = 1
        else:
            target.write_bytes(data)
        if args.sums:
            print(f"{hashlib.sha256(data).hexdigest()}  {len(data):5d}  {name}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
