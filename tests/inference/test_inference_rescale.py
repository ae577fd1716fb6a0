import numpy as np
import pytest

from tomopick.errors import TomopickError
from tomopick.inference.rescale import rescale_factors, rescale_slab, rescale_volume, rescaled_shape


def ramp(shape, a=(0.5, -0.25, 0.125)):
    z, y, x = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    return (a[0] * z + a[1] * y + a[2] * x).astype(np.float32)


def test_factors_range_and_tolerance():
    assert rescale_factors(10.0, 10.05) is None  # within 1 %
    np.testing.assert_allclose(rescale_factors(5.0, 10.0), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(rescale_factors((12.0, 10.0, 10.0), 10.0), [1.2, 1.0, 1.0])
    with pytest.raises(TomopickError, match="too far from the model's 10 Å"):
        rescale_factors(30.0, 10.0, source="t.mrc")
    with pytest.raises(TomopickError):
        rescale_factors(4.0, 10.0)


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.6])
def test_linear_ramp_is_reproduced_in_angstrom(factor):
    shape = (30, 34, 38)
    vol = ramp(shape)
    out = rescale_volume(vol, (factor,) * 3, slab_depth=7)
    assert out.shape == rescaled_shape(shape, (factor,) * 3)
    # output voxel o sits at input index o / factor: a linear function is reproduced exactly away from the edges
    expected = ramp(out.shape, a=tuple(v / factor for v in (0.5, -0.25, 0.125)))
    inner = tuple(slice(4, s - 4) for s in out.shape)
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-4)


def test_slabs_equal_whole(rng):
    vol = rng.normal(size=(25, 20, 22)).astype(np.float32)
    whole = rescale_slab(vol, (0.6, 0.6, 0.6), (0, rescaled_shape(vol.shape, (0.6,) * 3)[0]))
    pieces = rescale_volume(vol, (0.6, 0.6, 0.6), slab_depth=4)
    np.testing.assert_allclose(pieces, whole, atol=1e-6)


def test_nonfinite_voxels_do_not_spread():
    vol = np.ones((12, 12, 12), dtype=np.float32)
    vol[6, 6, 6] = np.nan
    out = rescale_volume(vol, (0.5, 0.5, 0.5))
    assert np.isfinite(out).all() and np.allclose(out, 1.0)
