"""The permissively licensed COCO detectors we know how to install, and their config.pbtxt.

No PyPI package ships these ONNX files. Each entry names the file's upstream host (pinned to a
commit), its sha256, and the pre-/post-processing its upstream project defines (see
preprocess.py and decoders.py for the parameters). The installer fetches a file from `url`
(checked against `sha256`) or copies it from a local cache directory; the server itself never
downloads anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# ImageNet statistics on the 0..255 scale, in RGB order.
_IMAGENET_MEAN = "123.675 116.28 103.53"
_IMAGENET_STD = "58.395 57.12 57.375"


@dataclass(frozen=True)
class CatalogueModel:
    name: str  # the model's name in the repository
    filename: str  # the file's name in a cache directory
    url: str
    sha256: str
    licence: str
    input_name: str
    input_size: int  # square input, pixels
    outputs: tuple[tuple[str, tuple[int, ...]], ...]  # (name, dims without batch) in order
    parameters: dict[str, str] = field(default_factory=dict)
    # The export's outputs lack the batch dimension: the installer adds it (and the names).
    add_batch_dimension: bool = False

    def config_pbtxt(self) -> str:
        """Triton config: batch 1 (the exports have a fixed batch dimension of 1)."""
        outputs = ",\n".join(
            f'  {{ name: "{name}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, dims))} ]'
            + (' label_filename: "labels.txt"' if i == 0 else "")
            + " }"
            for i, (name, dims) in enumerate(self.outputs)
        )
        params = "".join(
            f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n'
            for k, v in self.parameters.items()
        )
        size = self.input_size
        return (
            f'name: "{self.name}"\n'
            'platform: "onnxruntime_onnx"\n'
            "max_batch_size: 1\n"
            f'input [\n  {{ name: "{self.input_name}" data_type: TYPE_FP32 '
            f"dims: [ 3, {size}, {size} ] }}\n]\n"
            f"output [\n{outputs}\n]\n"
            f"{params}"
        )


def _gfl_outputs(
    names: list[str], size: int, strides: tuple[int, ...]
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    cells = [math.ceil(size / s) ** 2 for s in strides]
    shapes = [(c, 80) for c in cells] + [(c, 32) for c in cells]
    return tuple(zip(names, shapes, strict=True))


_PICODET_NAMES = [f"save_infer_model/scale_{i}.tmp_1" for i in range(8)]
_PICODET_PARAMETERS = {
    "output_layout": "picodet",
    "color_order": "RGB",
    "input_scale": "1",
    "input_mean": _IMAGENET_MEAN,
    "input_std": _IMAGENET_STD,
    "resize": "stretch",  # PicoDet was trained on plain resizes: a letterbox costs 2.4 points
}
_NANODET_PARAMETERS = {
    "output_layout": "nanodet",
    "color_order": "BGR",
    "input_scale": "1",
    "input_mean": "103.53 116.28 123.675",
    "input_std": "57.375 57.12 58.395",
    "resize": "letterbox",
    "pad_value": "0",
    "strides": "8 16 32",
}

CATALOGUE: dict[str, CatalogueModel] = {
    m.name: m
    for m in (
        CatalogueModel(
            name="yolox-nano",
            filename="yolox_nano_416.onnx",
            url="https://raw.githubusercontent.com/Bigisland1729/object-detection-models/"
            "6e770c5ef34fa42aaa2521eb7d0d9ec2bb5f40a3/yolox_nano.onnx",
            sha256="e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
            licence="Apache-2.0 (YOLOX, Megvii)",
            input_name="images",
            input_size=416,
            outputs=(("output", (3549, 85)),),
            parameters={
                "output_layout": "yolox",
                "color_order": "BGR",
                "input_scale": "1",
                "resize": "letterbox_top_left",
                "pad_value": "114",
            },
        ),
        CatalogueModel(
            name="picodet-s-320",
            filename="picodet_s_320_coco.onnx",
            url="https://raw.githubusercontent.com/hpc203/picodet-onnxruntime/"
            "6bd166c3944bf8b3a0c41951344ecb5101af756a/coco/picodet_s_320_coco.onnx",
            sha256="d7852a1508b36bfc2739770ad52ff28bf81e219dc5c15dd7868d5ebdf007b6c8",
            licence="Apache-2.0 (PP-PicoDet, PaddleDetection)",
            input_name="image",
            input_size=320,
            outputs=_gfl_outputs(_PICODET_NAMES, 320, (8, 16, 32, 64)),
            parameters=_PICODET_PARAMETERS,
        ),
        CatalogueModel(
            name="picodet-s-416",
            filename="picodet_s_416_coco.onnx",
            url="https://raw.githubusercontent.com/hpc203/picodet-onnxruntime/"
            "6bd166c3944bf8b3a0c41951344ecb5101af756a/coco/picodet_s_416_coco.onnx",
            sha256="cdab77bdde16e4f76bec734c4e5791801d1739e4c7ec1995e0e110e04300d0c2",
            licence="Apache-2.0 (PP-PicoDet, PaddleDetection)",
            input_name="image",
            input_size=416,
            outputs=_gfl_outputs(_PICODET_NAMES, 416, (8, 16, 32, 64)),
            parameters=_PICODET_PARAMETERS,
        ),
        CatalogueModel(
            name="nanodet-m-320",
            filename="nanodet_m_320.onnx",
            url="https://raw.githubusercontent.com/hpc203/nanodet-opncv-dnn-cpp-python/"
            "270281edbc74c880e0c056c59faa73ea71fa1f22/nanodet.onnx",
            sha256="c59b6c947ce475d27023327808aed655fa000981fe144c4fd2026828999e19f8",
            licence="Apache-2.0 (NanoDet, RangiLyu)",
            input_name="image",
            input_size=320,
            # Renamed by the installer: the export's own names do not match their tensors.
            outputs=_gfl_outputs(
                ["cls_8", "cls_16", "cls_32", "box_8", "box_16", "box_32"], 320, (8, 16, 32)
            ),
            parameters=_NANODET_PARAMETERS,
            add_batch_dimension=True,
        ),
        CatalogueModel(
            name="nanodet-m-416",
            filename="nanodet_m_416.onnx",
            url="https://raw.githubusercontent.com/hpc203/nanodet-opncv-dnn-cpp-python/"
            "f46e225a0c92ef611395425940927cc4cbef3fb5/nanodet_m.onnx",
            sha256="4b82da9944b88577175ee23a459dce2e26e6e4be573def65b1055dc2d9720186",
            licence="Apache-2.0 (NanoDet, RangiLyu)",
            input_name="input.1",
            input_size=416,
            outputs=_gfl_outputs(["792", "814", "836", "795", "817", "839"], 416, (8, 16, 32)),
            parameters=_NANODET_PARAMETERS,
        ),
    )
}

# COCO's 80 classes with Darknet's names (coco.names), the vocabulary YOLOv3-tiny already
# serves: a camera pipeline watching "motorbike" keeps working when the default changes.
COCO_LABELS = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa",
    "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
