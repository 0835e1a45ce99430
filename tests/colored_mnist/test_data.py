"""Environment construction and IDX reading, on synthetic MNIST-format files."""
import gzip
import os

import numpy as np
import pytest
import torch

from colored_mnist import data, sources
from colored_mnist.errors import DataError
from tests.colored_mnist.conftest import VAL, synthetic_arrays, write_folder


def lit_channel(env):
    """Index of the non-zero channel of each image."""
    sums = env.images.flatten(2).sum(-1)  # (N, 2)
    assert bool(((sums[:, 0] == 0) ^ (sums[:, 1] == 0)).all()), "exactly one channel lit"
    return (sums[:, 1] > 0).float()


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_round_trip(tmp_path, gzipped):
    images, classes = synthetic_arrays(50)
    folder = write_folder(tmp_path / "d", images, classes, gzipped=gzipped)
    read_images, read_classes = sources.read_idx_folder(folder)
    assert read_images.dtype == np.uint8 and read_images.shape == (50, 28, 28)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_classes, classes)
    assert read_classes.dtype == np.int64


def test_correlation_shift_statistics(idx_folder):
    folder, images, classes = idx_folder
    envs = data.build_environments(*sources.load("idx", folder), "correlation_shift",
                                   seed=3, val_size=VAL, generator=torch.Generator()
                                   .manual_seed(0))
    pool = len(images) - VAL
    assert [e.name for e in envs] == ["train0", "train1", "test", "gray_test"]
    assert [e.images.shape[0] for e in envs] == [pool // 2, pool // 2, VAL, VAL]
    for env, flip in zip(envs, (0.2, 0.1, 0.9)):
        assert env.images.shape[1:] == (2, 14, 14) and env.images.dtype == torch.float32
        assert env.labels.shape == (env.images.shape[0], 1)
        assert float(env.images.min()) >= 0 and float(env.images.max()) <= 1
        clean = (env.classes < 5).float()[:, None]
        noise = float((env.labels != clean).float().mean())
        assert abs(noise - 0.25) < 0.03, noise
        disagreement = float((lit_channel(env)[:, None] != env.labels).float().mean())
        assert abs(disagreement - flip) < 0.03, (env.name, disagreement)
    gray = envs[3]
    assert torch.equal(gray.images[:, 0], gray.images[:, 1])
    # The same images as the test environment, but its own label noise.
    torch.testing.assert_close(gray.images.amax(1), envs[2].images.amax(1))
    assert 0.3 < float((gray.labels != envs[2].labels).float().mean()) < 0.45


def test_images_are_strided_and_pools_in_the_scripts_order(idx_folder):
    folder, images, classes = idx_folder
    seed = 5
    envs = data.build_environments(images, classes, "correlation_shift", seed,
                                   val_size=VAL, generator=torch.Generator().manual_seed(1))
    # The scripts' shuffle: np.random.shuffle of the pool in place, from np.random.seed.
    np.random.seed(seed)
    pool = images[:len(images) - VAL].copy()
    np.random.shuffle(pool)
    np.random.seed(seed)
    pool_classes = classes[:len(images) - VAL].copy()
    np.random.shuffle(pool_classes)
    expected = torch.from_numpy(pool[::2][:, ::2, ::2]).float() / 255
    torch.testing.assert_close(envs[0].images.amax(1), expected)
    assert torch.equal(envs[1].classes, torch.from_numpy(pool_classes[1::2]))
    test_images = torch.from_numpy(images[-VAL:, ::2, ::2]).float() / 255
    torch.testing.assert_close(envs[3].images[:, 0], test_images)


def test_draws_follow_the_scripts_order():
    """Label noise then colour per environment, train 0, train 1, test, gray."""
    images, classes = synthetic_arrays(300)
    envs = data.build_environments(images, classes, "correlation_shift", 0, val_size=100,
                                   generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    for env in envs:
        n = env.images.shape[0]
        flips = torch.rand(n, generator=generator) < 0.25
        torch.rand(n, generator=generator)
        clean = (env.classes < 5)
        assert torch.equal(env.labels[:, 0].bool(), clean ^ flips)


def test_train_size_keeps_the_first_of_the_shuffled_pool(idx_folder):
    _, images, classes = idx_folder
    full = data.build_environments(images, classes, "correlation_shift", 2, val_size=VAL)
    small = data.build_environments(images, classes, "correlation_shift", 2, val_size=VAL,
                                    train_size=400)
    assert [e.images.shape[0] for e in small] == [200, 200, VAL, VAL]
    assert torch.equal(small[0].classes, full[0].classes[:200])


def test_label_shift_split_as_the_scripts_ran_it(idx_folder):
    _, images, classes = idx_folder
    envs = data.build_environments(images, classes, "label_shift", 4, val_size=VAL,
                                   train_size=3000)
    pool = data.split_pools(images, classes, np.random.RandomState(4), VAL, 3000)[1]
    low, high = int((pool < 5).sum()), int((pool >= 5).sum())
    first, second = envs[0].classes, envs[1].classes
    assert int((second < 5).sum()) == 0, "train 1 holds no class < 5"
    assert int((first < 5).sum()) == low, "train 0 holds every class < 5"
    assert int((first >= 5).sum()) == round(0.03 * 3000) == 90
    assert int((second >= 5).sum()) == high - 90
    # Train 0's classes >= 5 are the first 90 of the shuffled pool, in order.
    assert torch.equal(first[first >= 5], pool[pool >= 5][:90])
    noise1 = float(envs[1].labels.mean())
    assert abs(noise1 - 0.25) < 0.04, "train 1: clean label 0, 25% noise"


def test_label_shift_sizes_on_mnist_class_counts():
    """The spec's numbers: 25,538 digits < 5 and 24,462 >= 5 in MNIST's first 50,000."""
    classes = torch.cat([torch.zeros(25_538), torch.full((24_462,), 7.0)])
    classes = classes[torch.randperm(50_000, generator=torch.Generator().manual_seed(0))]
    first, second = data.label_shift_indices(classes)
    assert (len(first), len(second)) == (27_038, 22_962)
    # Train 0: every digit < 5 and round(0.03 * 50,000) = 1,500 digits >= 5;
    # train 1: the other 22,962 digits >= 5, no digit < 5 (the mask-length rule).
    assert int((classes[first] < 5).sum()) == 25_538
    assert int((classes[first] >= 5).sum()) == 1_500
    assert int((classes[second] < 5).sum()) == 0
    assert sorted(set(first.tolist()) | set(second.tolist())) == list(range(50_000))


def _corrupt_cases(tmp_path):
    images, classes = synthetic_arrays(20)
    good = write_folder(tmp_path / "good", images, classes, gzipped=False)
    cases = {}
    folder = write_folder(tmp_path / "truncated", images, classes, gzipped=True)
    path = os.path.join(folder, sources.IMAGES + ".gz")
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    cases["truncated gzip"] = (folder, path)
    folder = write_folder(tmp_path / "magic", images, classes, gzipped=False)
    path = os.path.join(folder, sources.LABELS)
    raw = bytearray(open(path, "rb").read())
    raw[0] = 7
    open(path, "wb").write(bytes(raw))
    cases["bad magic"] = (folder, path)
    folder = write_folder(tmp_path / "short", images, classes, gzipped=False)
    path = os.path.join(folder, sources.IMAGES)
    open(path, "wb").write(open(path, "rb").read()[:-5])
    cases["short data"] = (folder, path)
    folder = write_folder(tmp_path / "count", images, classes[:-1], gzipped=True)
    cases["label count"] = (folder, os.path.join(folder, sources.LABELS + ".gz"))
    folder = str(tmp_path / "missing")
    os.makedirs(folder)
    cases["missing"] = (folder, os.path.join(folder, sources.IMAGES))
    assert sources.read_idx_folder(good)[0].shape == (20, 28, 28)
    return cases


def test_bad_files_give_one_line_naming_the_file(tmp_path):
    for case, (folder, path) in _corrupt_cases(tmp_path).items():
        with pytest.raises(DataError) as caught:
            sources.load("fashion_mnist", folder)
        message = str(caught.value)
        assert "\n" not in message, case
        assert path in message, (case, message)
        assert "apt-get install dataset-fashion-mnist" in message, case


def test_idx_needs_a_data_dir_and_gzip_is_detected_by_content(tmp_path):
    with pytest.raises(DataError, match="--data_dir"):
        sources.load("idx", None)
    images, classes = synthetic_arrays(10)
    folder = str(tmp_path / "plain_named_gz")
    os.makedirs(folder)
    raw = bytes([0, 0, 8, 3]) + np.array([10, 28, 28], ">u4").tobytes() + images.tobytes()
    open(os.path.join(folder, sources.IMAGES), "wb").write(gzip.compress(raw))
    sources.write_idx(os.path.join(folder, sources.LABELS), classes)
    np.testing.assert_array_equal(sources.load("idx", folder)[0], images)


def test_mnist_reads_torchvision_raw_files_without_downloading(tmp_path):
    images, classes = synthetic_arrays(40)
    write_folder(tmp_path / "MNIST" / "raw", images, classes, gzipped=False)
    read_images, read_classes = sources.load("mnist", str(tmp_path))
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_classes, classes)
