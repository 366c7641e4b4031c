"""Generates the synthetic test faces in examples/images/faces/ (cartoon faces, not people).

Run with any Python that has Pillow: `python3 examples/make_faces.py`. The files are
committed; this script exists so they can be regenerated. Each JPEG is kept above 10 KB of
base64 (Huawei IVS refuses smaller images with IVS.0004) by drawing fine noise.
"""
import os
import random

from PIL import Image, ImageDraw

OUT = os.path.join(os.path.dirname(__file__), "images", "faces")
os.makedirs(OUT, exist_ok=True)


def face(seed: int, size=(360, 440)) -> Image.Image:
    rnd = random.Random(seed)
    img = Image.new("RGB", size, (rnd.randint(180, 230),) * 3)
    px = img.load()
    for y in range(size[1]):  # background noise: realistic JPEG sizes
        for x in range(size[0]):
            v = rnd.randint(-25, 25)
            r, g, b = px[x, y]
            px[x, y] = (max(0, min(255, r + v)), max(0, min(255, g + v)), max(0, min(255, b + v)))
    d = ImageDraw.Draw(img)
    skin = (rnd.randint(200, 240), rnd.randint(160, 200), rnd.randint(130, 170))
    d.ellipse((70, 70, 290, 360), fill=skin, outline=(90, 60, 40), width=3)
    d.ellipse((70, 40, 290, 170), fill=(40, 30, 25))  # hair
    for ex in (130, 230):
        d.ellipse((ex - 18, 190, ex + 18, 215), fill="white", outline="black")
        d.ellipse((ex - 7, 195, ex + 7, 210), fill=(60, 40, 20))
    d.line((180, 210, 170, 270), fill=(120, 80, 60), width=3)
    d.arc((130, 270, 230, 320), 10, 170, fill=(150, 40, 40), width=4)
    return img


for i in range(1, 7):
    face(i).save(os.path.join(OUT, f"face{i:02d}.jpg"), "JPEG", quality=88)
# Too small for IVS (base64 under 10 KB): exercises IVS.0004.
face(99, (120, 140)).convert("L").resize((60, 70)).save(os.path.join(OUT, "tiny.jpg"), "JPEG", quality=40)
