#!/usr/bin/python3
"""make_seeds.py - write the fuzz targets' seed corpora into fuzz/corpus/TARGET/.

A few tiny valid inputs per target (the fuzzer mutates from them): JPEGs and PNGs of
the kinds the decoder handles (Pillow), Content-Type values, multipart bodies, option
strings and .safetensors files.  Deterministic; run from anywhere:
    /usr/bin/python3 fuzz/make_seeds.py
"""
import io
import json
import os
import struct

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def image(mode, size, fmt, **kw):
    w, h = size
    im = Image.new("RGB", size)
    im.putdata([((x * 37) % 256, (y * 53) % 256, ((x + y) * 11) % 256)
                for y in range(h) for x in range(w)])
    if mode == "P":
        im = im.quantize(8)
    elif mode == "I;16":
        im = im.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
    elif mode != "RGB":
        im = im.convert(mode)
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def safetensors(tensors, metadata=None):
    header, blobs, off = {}, b"", 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs += data
        off += len(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blobs


def main():
    put("image_decode", "baseline.jpg", image("RGB", (16, 8), "JPEG", quality=50))
    put("image_decode", "progressive.jpg",
        image("RGB", (16, 16), "JPEG", quality=50, progressive=True))
    put("image_decode", "gray.jpg", image("L", (8, 8), "JPEG", quality=50))
    put("image_decode", "cmyk.jpg", image("CMYK", (8, 8), "JPEG", quality=50))
    put("image_decode", "rgb.png", image("RGB", (5, 3), "PNG"))
    put("image_decode", "rgba.png", image("RGBA", (4, 4), "PNG"))
    put("image_decode", "palette.png", image("P", (6, 2), "PNG"))
    put("image_decode", "gray16.png", image("I;16", (3, 3), "PNG"))
    put("image_decode", "interlaced.png", image("RGB", (9, 9), "PNG", interlace=1))

    for i, v in enumerate(["image/jpeg", "image/png; charset=binary", "application/octet-stream",
                           "multipart/form-data; boundary=----igs123",
                           'multipart/form-data; charset=utf-8; boundary="a b:c"',
                           "MULTIPART/FORM-DATA;BOUNDARY=x"]):
        put("content_type", "ct%d" % i, v)

    def form(boundary, parts):
        out = ""
        for headers, body in parts:
            out += "--%s\r\n%s\r\n\r\n%s\r\n" % (boundary, "\r\n".join(headers), body)
        return out + "--%s--\r\n" % boundary

    put("multipart", "image_and_steps", "abc\n" + form("abc", [
        (['Content-Disposition: form-data; name="image"; filename="x.png"',
          "Content-Type: image/png"], "\x89PNG..."),
        (['Content-Disposition: form-data; name="steps"'], "16")]))
    put("multipart", "quoted", "----x y\n" + form("----x y", [
        (['content-disposition: form-data; name="a\\"b"; filename=""'], ""),
        (['Content-Disposition: form-data; name="baseline"'], "black")]))
    put("multipart", "preamble", "b\npreamble\r\n" + form("b", [
        (['Content-Disposition: form-data; name="image"'], "--b-not-a-delimiter")]))

    for i, v in enumerate(["steps=16&method=riemann_left&baseline=blur&blur_sigma=3",
                           "heatmaps=overlay,magnitude,overlay_full&top_k=3&resize=center-crop",
                           "tolerance=0.01&max_steps=256&target=2&raw=npy",
                           "smoothgrad=vargrad&smoothgrad_samples=4&smoothgrad_sigma=0.2&seed=7",
                           "output=probability&deadline_ms=1000&path_maps=true&heatmaps=none",
                           "path_views=gradient,step_deviation&heatmaps=channel_r_deviation,channel_b"]):
        put("request_options", "opts%d" % i, v)
    put("request_options", "targets",
        "targets=top3&output=logprob&faithfulness=deletion,insertion&faithfulness_steps=4")

    put("safetensors", "f32", safetensors(
        {"fc.weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
         "fc.bias": ("F32", [2], struct.pack("<2f", 0.5, -0.5))}, {"format": "pt"}))
    put("safetensors", "halves", safetensors(
        {"a": ("F16", [3], struct.pack("<3e", 1, -2, 0.25)),
         "b": ("BF16", [1, 2], b"\x80\x3f\x00\xc0"),
         "n": ("I64", [], struct.pack("<q", 0))}))
    put("safetensors", "f64_empty", safetensors(
        {"d": ("F64", [1], struct.pack("<d", 3.5)), "e": ("F32", [0], b"")}))


if __name__ == "__main__":
    main()
