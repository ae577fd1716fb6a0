import numpy as np
import pytest

from tomopick.peaks import METHODS, block_grid, find_peaks, find_peaks_blocks


def many_blobs(rng, shape=(40, 60, 64), n=25, sigma=1.5):
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    out = np.zeros((2, *shape), dtype=np.float32)
    for c in range(2):
        for _ in range(n):
            z, y, x = (rng.uniform(0, s) for s in shape)
            h = rng.uniform(0.5, 1.0)
            out[c] = np.maximum(out[c], h * np.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)))
    return out


def test_block_grid_tiles_once():
    for shape, budget, halo in [((40, 60, 64), 5000, 3), ((10, 200, 30), 20000, 5), ((5, 5, 5), 10**6, 2)]:
        count = np.zeros(shape, int)
        for blk in block_grid(shape, budget, halo):
            count[blk] += 1
        assert np.all(count == 1)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("method", METHODS)
def test_blocks_equal_whole_map(rng, method, workers):
    """Blocks with halos, one channel per thread or all in one, give exactly the whole map's peaks."""
    score = many_blobs(rng)
    whole = find_peaks(score, method, threshold=0.4, radius_vox=[3, 4])
    blocked = find_peaks_blocks(lambda c, region: score[(c, *region)], score.shape, method, threshold=0.4,
                                radius_vox=[3, 4], block_voxels=40_000 * min(workers, 2), workers=workers)
    assert len(block_grid(score.shape[1:], 40_000, 8)) > 4
    assert len(whole) > (3 if method == "mpnms" else 20)  # MP-NMS merges small blobs
    key = lambda p: sorted(zip(p.channel.tolist(), *np.round(p.zyx, 3).T.tolist(), np.round(p.score, 5).tolist()))
    assert key(blocked) == key(whole)
