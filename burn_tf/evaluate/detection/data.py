"""Detection data: Fashion-MNIST composites (offline) and tfds VOC (prepared, never
downloaded), as keras-cv training batches, test batches with indices and ground truth."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from burn_tf.data.detection_composites import coin_flip, make_detection_composites
from burn_tf.data.source_tfds import gcs_disabled, tfds_source


@dataclasses.dataclass
class DetectionData:
    """Train batches, test batches and the test ground truth of one detection data set."""

    train: tf.data.Dataset  # batches of {"images", "bounding_boxes"}
    test: tf.data.Dataset  # batches of (images, index)
    test_gt: list  # per test image: (boxes [G,4], classes [G], ignore [G])
    train_boxes: list  # per train image boxes (anchor coverage)
    class_names: tuple
    num_train: int
    num_test: int
    description: str


def _images_with_index(index, example):
    return example["images"], index


def _first_with_index(index, example):
    return example[0], index


def _zero(example):
    return tf.constant(0)


def composites_data(input_size, num_train, num_test, batch_size, augment, seed, root,
                    **options) -> DetectionData:
    """Fashion-MNIST composites (:mod:`burn_tf.data.detection_composites`) at ``input_size``;
    ``options`` (background, item_scale, occlusion, …) go to ``make_detection_composites``."""

    train = make_detection_composites("train", num_train, input_size, seed=seed, root=root, **options)
    test = make_detection_composites("test", num_test, input_size, seed=seed, root=root, **options)
    test_gt = []
    for i in range(len(test)):
        k = int(test.num_objects[i])
        test_gt.append((test.boxes[i, :k], test.classes[i, :k].astype(np.int64), np.zeros(k, bool)))
    test_ds = test.to_dataset()
    test_ds = test_ds.enumerate().map(_images_with_index).batch(batch_size)
    return DetectionData(
        train=train.to_dataset(batch_size, shuffle=True, seed=seed, flip=augment),
        test=test_ds,
        test_gt=test_gt,
        train_boxes=[train.boxes[i, : train.num_objects[i]] for i in range(min(len(train), 500))],
        class_names=train.class_names,
        num_train=len(train),
        num_test=len(test),
        description=(f"Fashion-MNIST composites ({input_size} px canvases, 1-4 items, "
                     f"{options.get('background', 'black')} background, seed {seed})"),
    )


def open_voc(name, data_dir, num_train, num_test):
    """tfds VOC prepared under ``data_dir`` → (train examples, test examples, class names,
    description). Never downloads: a missing data_dir or unprepared dataset is an error
    (:func:`burn_tf.data.source_tfds.tfds_source`'s checks, as the SVM's VOC reader)."""

    for split in ("train+validation", "test"):
        tfds_source(name, split, data_dir, label_key=None)  # checks: data_dir, prepared, splits
    import tensorflow_datasets as tfds

    with gcs_disabled():
        builder = tfds.builder(name, data_dir=os.fspath(data_dir))
        train_raw = builder.as_dataset(split="train+validation", shuffle_files=False)
        test_raw = builder.as_dataset(split="test", shuffle_files=False)
        class_names = tuple(builder.info.features["objects"]["label"].names)
    if num_train is not None:
        train_raw = train_raw.take(int(num_train))
    if num_test is not None:
        test_raw = test_raw.take(int(num_test))
    def first(n):
        return "" if n is None else f", first {n}"

    return train_raw, test_raw, class_names, (
        f"tfds {name} (train+validation{first(num_train)} → test{first(num_test)}) from {data_dir}"
    )


def voc_detection_data(train_raw, test_raw, class_names, input_size, batch_size, augment, seed,
                       description) -> DetectionData:
    """tfds VOC examples ({"image", "objects": {"bbox" rel yxyx, "label", "is_difficult"}})
    → detection batches at ``input_size`` (resized, boxes in pixel xyxy)."""
    size = float(input_size)

    def convert(example):
        image = tf.image.resize(tf.cast(example["image"], tf.float32) / 255.0, (input_size, input_size))
        rel = tf.reshape(tf.cast(example["objects"]["bbox"], tf.float32), (-1, 4))  # ymin, xmin, ymax, xmax
        boxes = tf.stack([rel[:, 1], rel[:, 0], rel[:, 3], rel[:, 2]], axis=-1) * size
        classes = tf.cast(example["objects"]["label"], tf.float32)
        return image, boxes, classes, tf.cast(example["objects"]["is_difficult"], tf.bool)

    def to_train(example, flip):
        image, boxes, classes, _ = example
        if augment:
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            flipped = tf.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=-1)
            boxes = tf.cond(flip, lambda: flipped, lambda: boxes)
        return {"images": image, "bounding_boxes": {"boxes": boxes, "classes": classes}}

    train = train_raw.map(convert, num_parallel_calls=tf.data.AUTOTUNE).shuffle(1000, seed=seed)
    coins = tf.data.Dataset.random(seed=seed).map(coin_flip)
    train = tf.data.Dataset.zip((train, coins)).map(to_train, num_parallel_calls=tf.data.AUTOTUNE)
    train = train.padded_batch(
        batch_size, padding_values={"images": 0.0, "bounding_boxes": {"boxes": -1.0, "classes": -1.0}}
    ).prefetch(tf.data.AUTOTUNE)
    test_gt = []
    def boxes_only(example):
        return convert({**example, "image": tf.zeros([1, 1, 3], tf.uint8)})

    for _, boxes, classes, difficult in test_raw.map(boxes_only):
        test_gt.append((boxes.numpy(), classes.numpy().astype(np.int64), difficult.numpy()))
    test = test_raw.map(convert).enumerate().map(_first_with_index).batch(batch_size)
    train_boxes = [b.numpy() for _, b, _, _ in train_raw.take(500).map(boxes_only)]
    num_train = int(train_raw.cardinality())
    if num_train < 0:
        num_train = sum(1 for _ in train_raw.map(_zero))
    return DetectionData(
        train=train, test=test, test_gt=test_gt, train_boxes=train_boxes, class_names=tuple(class_names),
        num_train=num_train, num_test=len(test_gt), description=description,
    )
