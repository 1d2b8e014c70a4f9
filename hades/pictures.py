"""Composing pictures and writing them: grids of captioned tiles, captioned frames, PNG, GIF and MP4 files.

Every file is written atomically, so a picture is either whole or absent.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from hades.errors import SpecError

# Layout of a grid of tiles (pixels).
GUTTER = 4
TILE_BACKGROUND = (255, 255, 255)
GRID_BACKGROUND = (236, 236, 236)
TEXT_COLOUR = (20, 20, 20)
MAX_RENDER_SIZE = 2048


def grid_layout(count: int, width: int, height: int, columns: int | None = None) -> dict[str, int]:
    """Where the tiles of a state grid go: columns, rows, and the caption and header heights."""
    columns = max(1, min(count, columns or math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    font_size = caption_font_size(width)
    return {"columns": columns, "rows": rows, "caption": 2 * font_size + 8, "font": font_size,
            "cell_width": width + GUTTER, "cell_height": height + 2 * font_size + 8 + GUTTER}


def compose_grid(images: list[np.ndarray], captions: list[tuple[str, str]], title_lines: list[str],
                 columns: int | None, legend: list[tuple[str, tuple[int, int, int]]]):
    from PIL import Image, ImageDraw

    height, width = images[0].shape[:2]
    layout = grid_layout(len(images), width, height, columns)
    font = load_font(layout["font"])
    header_font = load_font(max(12, layout["font"] + 1))
    line_height = max(12, layout["font"] + 1) + 6
    header = GUTTER + line_height * (len(title_lines) + (1 if legend else 0)) + GUTTER
    grid_width = max(GUTTER + layout["columns"] * layout["cell_width"], 360)
    grid_height = header + layout["rows"] * layout["cell_height"] + GUTTER
    grid = Image.new("RGB", (grid_width, grid_height), GRID_BACKGROUND)
    draw = ImageDraw.Draw(grid)
    y = GUTTER
    for line in title_lines:
        draw.text((GUTTER + 2, y), line, fill=TEXT_COLOUR, font=header_font)
        y += line_height
    if legend:
        x = GUTTER + 2
        for name, colour in legend:
            draw.rectangle([x, y + 2, x + line_height - 8, y + line_height - 6], fill=colour)
            x += line_height - 4
            draw.text((x, y), name, fill=TEXT_COLOUR, font=header_font)
            x += int(draw.textlength(name, font=header_font)) + 12
    for index, (picture, (first, second)) in enumerate(zip(images, captions)):
        row, column = divmod(index, layout["columns"])
        left = GUTTER + column * layout["cell_width"]
        top = header + row * layout["cell_height"]
        draw.rectangle([left, top, left + width - 1, top + layout["caption"] - 1], fill=TILE_BACKGROUND)
        draw.text((left + 3, top + 2), first, fill=TEXT_COLOUR, font=font)
        draw.text((left + 3, top + 4 + layout["font"]), fit_text(draw, second, font, width - 6), fill=TEXT_COLOUR, font=font)
        grid.paste(Image.fromarray(picture[..., :3]), (left, top + layout["caption"]))
    return grid


def caption_frame(picture: np.ndarray, text: str):
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.asarray(picture)[..., :3])
    draw = ImageDraw.Draw(image)
    font = load_font(caption_font_size(image.width))
    box = draw.textbbox((4, 3), text, font=font)
    draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=(255, 255, 255))
    draw.text((4, 3), text, fill=TEXT_COLOUR, font=font)
    return image


def fit_text(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def caption_font_size(width: int) -> int:
    return int(min(14, max(9, width // 14)))


def load_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, (int, np.integer)) or not 16 <= value <= MAX_RENDER_SIZE:
            raise SpecError(f"{name} must be a whole number of pixels between 16 and {MAX_RENDER_SIZE}, got {value!r}")


def save_png(image, path: Path) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return write_atomic(path, buffer.getvalue())


def save_gif(images: list, path: Path, duration_ms: int) -> Path:
    buffer = io.BytesIO()
    from PIL import Image

    frames = [image.convert("P", palette=Image.Palette.ADAPTIVE, colors=255) for image in images]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms,
                   loop=0, optimize=False, disposal=1)
    return write_atomic(path, buffer.getvalue())


def save_mp4(images: list, path: Path, duration_ms: int) -> Path:
    """An H.264 MP4 (yuv420p, what browsers and the Hub play) of ``images``, through the ffmpeg
    that the imageio-ffmpeg package ships; frames are padded to even sizes, as yuv420p needs."""
    import os
    import tempfile

    import imageio_ffmpeg

    from hades.errors import HadesError

    if path.is_dir():
        raise SpecError(f"{path} is a folder; give a file name for the video")
    frames = [np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, np.uint8)[..., :3] for image in images]
    height, width = frames[0].shape[:2]
    padded = (height + height % 2, width + width % 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(tmp, (padded[1], padded[0]), fps=1000.0 / max(duration_ms, 1),
                                             codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
                                             ffmpeg_log_level="error", output_params=["-movflags", "+faststart"])
        writer.send(None)
        for frame in frames:
            canvas = np.full(padded + (3,), 255, np.uint8)
            canvas[:height, :width] = frame
            writer.send(np.ascontiguousarray(canvas))
        writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        raise HadesError(f"cannot write the video {path}: {' '.join(str(exc).split())[:200]}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_atomic(path: Path, data: bytes) -> Path:
    from hades.formats import atomic_write_bytes

    if path.is_dir():
        raise SpecError(f"{path} is a folder; give a file name for the picture")
    atomic_write_bytes(path, data)
    return path
