#!/usr/bin/env bash
# Rebuild the embedded default model from scratch on a CPU, in one command (about 75 minutes on 2 cores):
#   bash training/build_default_model.sh [MINUTES]
# prepare -> train (MINUTES, default 60, one thread) -> export (fp16 bundle into Resources/models/) ->
# catalog entry (embedded, default) -> held-out report on the MNI152 T1 through the command line.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-60}
CONFIG=training/configs/brain_lite_128.yaml
ID=textsegment-brain-lite-v0.1.0
PY=.venv/bin/python
$PY -m training.prepare --config "$CONFIG"
$PY -m training.train --config "$CONFIG" --minutes "$MINUTES" --threads 1
$PY -m training.export --config "$CONFIG" --out "training/runs/$ID"
rm -rf "Resources/models/$ID"
mkdir -p Resources/models
cp -r "training/runs/$ID" "Resources/models/$ID"
$PY -m TextSegmentLib models publish "Resources/models/$ID" --embedded --set-default --modality MR --modality CT
$PY -m training.heldout --model "Resources/models/$ID" --out training/runs/heldout
