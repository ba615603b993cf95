"""Labelled image grids for sample figures and comparisons."""

from __future__ import annotations

import cv2
import numpy as np


def label(image: np.ndarray, text: str) -> np.ndarray:
    """Put ``text`` in a dark band above an RGB float image in [0, 1]."""
    band_height = 18
    band = np.zeros((band_height, image.shape[1], 3), dtype=np.uint8)  # anti-aliased text needs 8 bits
    cv2.putText(band, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band.astype(np.float32) / 255.0, image.astype(np.float32)], axis=0)


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` on a white canvas of ``height`` x ``width`` (top left)."""
    canvas = np.ones((height, width, 3), np.float32)
    canvas[: image.shape[0], : image.shape[1]] = np.clip(image, 0, 1)
    return canvas


def grid(rows: list[list[np.ndarray]], titles: list[str] | None = None, gap: int = 4) -> np.ndarray:
    """Tile RGB images row by row, with an optional title above each column.

    Cells of different sizes (test images smaller than the usual crop) sit on
    white cells of the largest size.
    """
    height = max(cell.shape[0] for row in rows for cell in row)
    width = max(cell.shape[1] for row in rows for cell in row)
    columns = max(len(row) for row in rows)
    canvas_rows = []
    for r, row in enumerate(rows):
        cells = []
        for c in range(columns):
            cell = pad_to(row[c], height, width) if c < len(row) else np.ones((height, width, 3), np.float32)
            if r == 0 and titles:
                cell = label(cell, titles[c])
            cells.append(cell)
            cells.append(np.ones((cell.shape[0], gap, 3), np.float32))
        canvas_rows.append(np.concatenate(cells[:-1], axis=1))
        canvas_rows.append(np.ones((gap, canvas_rows[-1].shape[1], 3), np.float32))
    return np.concatenate(canvas_rows[:-1], axis=0)
