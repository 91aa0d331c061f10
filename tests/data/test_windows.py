"""Blocked k-fold splits and the window Dataset, on the real D. melanogaster chr4 store."""

import numpy as np
import pytest

from dga.data.windows import COMPLEMENT, EpochBatches, WindowDataset, load_or_make_splits, make_splits
from dga.labels import Label


@pytest.fixture(scope="module")
def splits(dmel_store):
    return load_or_make_splits(dmel_store, k=4, test_fraction=0.1, seed=0)


def test_splits_cover_non_test_disjointly_and_cut_no_gene(dmel_store, splits):
    n = dmel_store.total_length
    (test,) = splits.test
    assert abs(test.start - 0.9 * n) < 0.01 * n and test.end == n
    blocks = sorted((r for f in splits.folds for r in f), key=lambda r: r.start)
    assert len(blocks) == 4 and blocks[0].start == 0 and blocks[-1].end == test.start
    assert all(a.end == b.start for a, b in zip(blocks, blocks[1:]))  # contiguous, disjoint
    lab = dmel_store.track("label")
    for cut in [b.start for b in blocks[1:]] + [test.start]:
        assert lab[cut] == Label.INTERGENIC  # cut sits on a base outside every gene
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) < 0.05 * n


def test_splits_deterministic_and_written_once(dmel_store, splits):
    assert make_splits(dmel_store, 4, 0.1, 0) == splits
    assert (dmel_store.path / "splits" / "k4_test0.1_seed0.json").is_file()
    assert load_or_make_splits(dmel_store, 4, 0.1, 0) == splits
    other = make_splits(dmel_store, 4, 0.1, 1)
    assert sorted(other.training(None), key=lambda r: r.start) == sorted(splits.training(None), key=lambda r: r.start)
    assert other.folds != splits.folds  # the seed permutes block -> fold


def test_windows_stay_inside_their_regions(dmel_store, splits):
    regions = splits.training(0)
    ds = WindowDataset(dmel_store, regions, 1000, stride=700)
    for epoch in range(3):
        ds.set_epoch(epoch)
        starts = ds.starts(np.arange(ds.n_forward))
        inside = np.zeros(starts.shape, bool)
        for r in regions:
            inside |= (starts >= r.start) & (starts + 1000 <= r.end)
        assert inside.all()
        val, test = splits.validation(0), splits.test
        for r in list(val) + list(test):
            assert not ((starts < r.end) & (starts + 1000 > r.start)).any()


def test_window_contents_forward_and_reverse_complement(dmel_store, splits):
    ds = WindowDataset(dmel_store, splits.training(None), 500, reverse_complement=True, labels="stranded")
    assert len(ds) == 2 * ds.n_forward
    seq, plus, minus = (dmel_store.track(t) for t in ("seq", "label_plus", "label_minus"))
    i = 123
    s = int(ds.starts(np.array([i]))[0])
    x, y = ds[i]
    assert x.shape == (500, 4) and y.shape == (500,)
    codes = seq[s:s + 500]
    expected = np.eye(5, 4, dtype=np.float32)[codes]
    np.testing.assert_array_equal(x.numpy(), expected)
    np.testing.assert_array_equal(y.numpy(), plus[s:s + 500])
    xr, yr = ds[i + ds.n_forward]
    np.testing.assert_array_equal(xr.numpy(), np.eye(5, 4, dtype=np.float32)[COMPLEMENT[codes][::-1]])
    np.testing.assert_array_equal(yr.numpy(), minus[s:s + 500][::-1])
    xb, yb = ds[np.array([i, i + ds.n_forward])]  # batched access gives the same windows
    np.testing.assert_array_equal(xb[1].numpy(), xr.numpy())
    np.testing.assert_array_equal(yb[0].numpy(), y.numpy())


def test_n_is_all_zeros(dmel_store, splits):
    seq = dmel_store.track("seq")
    n_pos = int(np.flatnonzero(seq == 4)[0])
    region = [r for r in splits.training(None) + list(splits.test) if r.start <= n_pos < r.end][0]
    ds = WindowDataset(dmel_store, [region], 50, stride=1)
    x, _ = ds[n_pos - region.start - 25]  # the first N sits mid-window
    assert x[25].sum() == 0 and x[:25].sum(dim=1).tolist() == [1.0] * 25
    np.testing.assert_array_equal(x.sum(dim=1).numpy(), seq[n_pos - 25:n_pos + 25] != 4)


def test_epoch_batches_shard_across_ranks():
    shards = [list(np.concatenate(list(EpochBatches(103, 10, seed=3, rank=r, world_size=2)))) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 50 and not set(shards[0]) & set(shards[1])
    b = EpochBatches(103, 10, seed=3)
    first = np.concatenate(list(b))
    b.set_epoch(1)
    assert not np.array_equal(first, np.concatenate(list(b)))
    assert len(b) == 10


def test_bad_window_arguments(dmel_store, splits):
    with pytest.raises(ValueError, match="window"):
        WindowDataset(dmel_store, splits.training(0), 0)
    with pytest.raises(ValueError, match="labels"):
        WindowDataset(dmel_store, splits.training(0), 10, labels="both")
    with pytest.raises(ValueError, match="k must be"):
        make_splits(dmel_store, k=1)
