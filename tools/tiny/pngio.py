"""pngio.py - a minimal PNG reader and writer in pure Python (zlib + struct only).

The reader takes what tttd (libspng) and this writer produce: 8-bit, non-interlaced,
colour type 2 (RGB) or 6 (RGBA), also 0 (grey) and 4 (grey + alpha); every scanline filter
(None, Sub, Up, Average, Paeth); any number of IDAT chunks; CRCs checked. Anything else
(16-bit, palette, Adam7) is refused with a message that names it.

Images are (width, height, rgb) with rgb a bytes object of width * height * 3 values, rows top
to bottom, alpha dropped (tttd writes opaque images).
"""
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width, height, rgb, level=6):
    """The bytes of an 8-bit RGB PNG of rgb (width * height * 3 bytes, row-major)."""
    rgb = bytes(rgb)
    if len(rgb) != width * height * 3:
        raise ValueError("png: %d bytes for a %dx%d RGB image" % (len(rgb), width, height))
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, level)) + \
        _chunk(b"IEND", b"")


def write_png(path, width, height, rgb):
    with open(path, "wb") as f:
        f.write(encode_png(width, height, rgb))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw, width, height, bpp):
    """The filtered scanlines of raw -> the image bytes (height rows of width * bpp)."""
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise ValueError("png: image data is %d bytes, expected %d" %
                         (len(raw), height * (stride + 1)))
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        base = y * (stride + 1)
        ftype = raw[base]
        line = bytearray(raw[base + 1:base + 1 + stride])
        if ftype == 0:
            pass
        elif ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(stride):
                if i >= bpp:
                    line[i] = (line[i] + _paeth(line[i - bpp], prev[i], prev[i - bpp])) & 0xFF
                else:
                    line[i] = (line[i] + prev[i]) & 0xFF
        else:
            raise ValueError("png: row %d has unknown filter type %d" % (y, ftype))
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return bytes(out)


def decode_png(blob):
    """(width, height, rgb bytes) of a PNG file's bytes."""
    if blob[:8] != SIGNATURE:
        raise ValueError("png: not a PNG file (bad signature)")
    pos, header, idat = 8, None, []
    while pos + 12 <= len(blob):
        (n,) = struct.unpack(">I", blob[pos:pos + 4])
        kind = blob[pos + 4:pos + 8]
        data = blob[pos + 8:pos + 8 + n]
        if len(data) != n or pos + 12 + n > len(blob):
            raise ValueError("png: chunk %r runs past the end of the file" % kind)
        (crc,) = struct.unpack(">I", blob[pos + 8 + n:pos + 12 + n])
        if crc != zlib.crc32(kind + data) & 0xFFFFFFFF:
            raise ValueError("png: chunk %r has a bad CRC" % kind)
        pos += 12 + n
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat.append(data)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise ValueError("png: missing IHDR or IDAT")
    width, height, depth, ctype, comp, filt, interlace = header
    if depth != 8 or ctype not in _CHANNELS:
        raise ValueError("png: bit depth %d, colour type %d not supported (8-bit grey, RGB, "
                         "RGBA only)" % (depth, ctype))
    if comp != 0 or filt != 0 or interlace != 0:
        raise ValueError("png: interlaced or non-standard PNGs are not supported")
    bpp = _CHANNELS[ctype]
    pix = _unfilter(zlib.decompress(b"".join(idat)), width, height, bpp)
    if ctype == 2:
        return width, height, pix
    if ctype == 6:
        rgb = bytearray(width * height * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = pix[0::4], pix[1::4], pix[2::4]
        return width, height, bytes(rgb)
    grey = pix[0::bpp]
    rgb = bytearray(width * height * 3)
    rgb[0::3], rgb[1::3], rgb[2::3] = grey, grey, grey
    return width, height, bytes(rgb)


def read_png(path):
    with open(path, "rb") as f:
        return decode_png(f.read())


def write_sheet(path, imgs, size, cols=8):
    """A contact sheet: RGB pictures of size x size (bytes), cols a row, as one PNG."""
    rows = (len(imgs) + cols - 1) // cols
    W, H = cols * size, rows * size
    buf = bytearray(W * H * 3)
    for k, rgb in enumerate(imgs):
        ox, oy = (k % cols) * size, (k // cols) * size
        for y in range(size):
            o = ((oy + y) * W + ox) * 3
            buf[o:o + size * 3] = rgb[y * size * 3:(y + 1) * size * 3]
    write_png(path, W, H, bytes(buf))
