import numpy as np

from emocloak.faces.detect import Box, confirmed, crop, detect_faces, downscaled, square_box
from emocloak.faces.landmarks import REGIONS, landmarks


def test_astronaut_has_one_face_with_landmarks_inside(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    b = faces[0]
    assert 150 < b.left < 200 and 60 < b.top < 110 and 70 < b.width < 110
    pts = landmarks(astronaut, b)
    assert pts.shape == (68, 2)
    assert (pts[:, 0] > b.left - 10).all() and (pts[:, 0] < b.right + 10).all()
    eyes_y = pts[list(REGIONS["right_eye"]) + list(REGIONS["left_eye"]), 1].mean()
    mouth_y = pts[list(REGIONS["mouth"]), 1].mean()
    assert eyes_y < mouth_y  # upright face


def test_no_face_in_blank_or_noise():
    assert detect_faces(np.full((200, 300, 3), 128, np.uint8)) == []
    rng = np.random.default_rng(0)
    assert detect_faces(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)) == []


def test_large_photo_is_searched_downscaled(astronaut):
    big = np.kron(astronaut, np.ones((6, 6, 1), np.uint8))  # 3072x3072
    faces = detect_faces(big)
    assert len(faces) == 1 and 900 < faces[0].left < 1300


def test_downscaled_copy_only_of_large_photos():
    small = np.zeros((300, 200, 3), np.uint8)
    assert downscaled(small, 640) == (small, 1.0)
    copy, scale = downscaled(np.zeros((3000, 4000), np.uint8), 1600)
    assert copy.shape == (1200, 1600) and scale == 0.4


def test_a_real_face_is_confirmed_at_any_size_and_texture_is_not(astronaut):
    (face,) = detect_faces(astronaut)
    assert confirmed(astronaut, face)
    big = np.kron(astronaut, np.ones((6, 6, 1), np.uint8))
    assert confirmed(big, face.scaled(6))
    assert not confirmed(astronaut, Box(135, 345, 210, 420))  # the mission patch
    assert not confirmed(np.full((400, 400, 3), 128, np.uint8), Box(100, 100, 300, 300))


def test_square_box_and_edge_padded_crop():
    img = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    sq = square_box(Box(0, 0, 40, 50), img.shape)
    assert sq.width == sq.height == round(50 * 1.35)
    c = crop(img, sq)
    assert c.shape == (sq.height, sq.width, 3)
    assert (c[0, 0] == img[0, 0]).all()  # outside the photo: edge pixels
