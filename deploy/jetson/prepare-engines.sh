#!/usr/bin/env bash
# Builds a TensorRT FP16 engine for each ONNX detector in the model repository, once, on the
# Jetson itself, with the trtexec of the Triton image that will load it (an engine only loads
# in the TensorRT version that built it). Run by the `engines` service of docker-compose.yml
# before Triton starts; see README.md.
#
# For every MODEL in $TRT_MODELS with <repo>/MODEL/1/model.onnx it writes <repo>/MODEL-trt/:
#   config.pbtxt   the ONNX model's config, platform tensorrt_plan (same tensors, same decoding
#                  parameters, so edge-inference-server decodes both the same way)
#   labels.txt     copied
#   1/model.plan   the engine: FP16 layers, FP32 inputs/outputs; for a model with a batch
#                  dimension (max_batch_size > 1) one optimisation profile for 1..max_batch_size
#   1/.engine-key  sha256 of the ONNX file, the trtexec binary and the flags: the cache key
# A later start with the same key does nothing; a new ONNX file or a new Triton image rebuilds.
set -euo pipefail

REPO="${MODEL_REPO:-/models}"
TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"
read -r -a MODELS <<< "${TRT_MODELS:-yolox-nano yolov3-tiny}"

if [[ ! -x "${TRTEXEC}" ]]; then
    echo "prepare-engines: no trtexec at ${TRTEXEC} (set TRTEXEC)" >&2
    exit 1
fi

# config.pbtxt values this script needs (Triton's text format, one setting per line or the
# compact `{ name: "images" ... dims: [ 3, 416, 416 ] }` form our repositories use).
max_batch_size() { sed -n 's/^max_batch_size:[[:space:]]*\([0-9]*\).*/\1/p' "$1" | head -n 1; }
input_name() {
    sed -n '/^input/,/^]/p' "$1" | sed -n 's/.*name:[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1
}
input_dims() {  # "3, 416, 416" -> "3x416x416"
    sed -n '/^input/,/^]/p' "$1" | sed -n 's/.*dims:[[:space:]]*\[\([^]]*\)\].*/\1/p' \
        | head -n 1 | tr -d ' ' | tr ',' 'x'
}

build_engine() {
    local model="$1"
    local source="${REPO}/${model}"
    local target="${REPO}/${model}-trt"
    local onnx="${source}/1/model.onnx"
    local config="${source}/config.pbtxt"
    if [[ ! -f "${onnx}" || ! -f "${config}" ]]; then
        echo "prepare-engines: ${model}: no ${onnx}, skipped"
        return 0
    fi

    local batch name dims
    batch="$(max_batch_size "${config}")"
    name="$(input_name "${config}")"
    dims="$(input_dims "${config}")"
    local -a flags=(--fp16)
    if [[ "${batch:-0}" -gt 1 ]]; then
        flags+=(
            "--minShapes=${name}:1x${dims}"
            "--optShapes=${name}:$(( (batch + 1) / 2 ))x${dims}"
            "--maxShapes=${name}:${batch}x${dims}"
        )
    fi

    local key
    key="$( { sha256sum "${onnx}" "${TRTEXEC}" | cut -d ' ' -f 1; echo "${flags[*]}"; } \
        | sha256sum | cut -d ' ' -f 1)"
    if [[ -f "${target}/1/model.plan" && "$(cat "${target}/1/.engine-key" 2>/dev/null)" == "${key}" ]]; then
        echo "prepare-engines: ${model}-trt: cached engine is current"
        return 0
    fi

    echo "prepare-engines: ${model}-trt: building (a few minutes) with ${flags[*]}"
    mkdir -p "${target}/1"
    # Written under a temporary name and moved into place: Triton polls the repository and must
    # never see half an engine.
    "${TRTEXEC}" --onnx="${onnx}" --saveEngine="${target}/1/model.plan.tmp" "${flags[@]}"
    mv "${target}/1/model.plan.tmp" "${target}/1/model.plan"
    echo "${key}" > "${target}/1/.engine-key"
    sed -e "s/^name:.*/name: \"${model}-trt\"/" \
        -e 's/^platform:.*/platform: "tensorrt_plan"/' \
        -e 's/^backend:.*/platform: "tensorrt_plan"/' \
        -e '/^instance_group/d' \
        "${config}" > "${target}/config.pbtxt"
    echo 'instance_group [ { kind: KIND_GPU count: 1 } ]' >> "${target}/config.pbtxt"
    if [[ -f "${source}/labels.txt" ]]; then
        cp "${source}/labels.txt" "${target}/labels.txt"
    fi
    echo "prepare-engines: ${model}-trt: done"
}

for model in "${MODELS[@]}"; do
    build_engine "${model}"
done
