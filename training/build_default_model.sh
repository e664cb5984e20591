#!/usr/bin/env bash
# Rebuild the embedded default model on a CPU in one command, continuing from the shipped weights (warm start):
#   bash training/build_default_model.sh [MINUTES] [INIT_BUNDLE]
# bank of 3D variants (about 10 s each; resumable) -> train (MINUTES, default 270, one thread, warm start from
# INIT_BUNDLE, default the newest shipped brain model; resumes a stopped run) -> export of the best validation weights (fp16 bundle
# into Resources/models/) -> catalog entry (embedded, default) -> held-out and robustness reports on the MNI152 T1.
# Validation uses held-out variants of the training subject; the MNI152 image is only ever used by the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-270}
LATEST=$(ls -d Resources/models/textsegment-brain-lite-v* | sort -V | tail -1)
INIT=${2:-$LATEST}
CONFIG=training/configs/brain_v2_128.yaml
ID=textsegment-brain-lite-v0.2.0
RUN=training/runs/brain_v2
PY=.venv/bin/python
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD"
$PY -m training.prepare --config "$CONFIG" --bank
$PY -m training.train --config "$CONFIG" --out "$RUN" --init "$INIT" --minutes "$MINUTES" --threads 1
$PY -m training.export --config "$CONFIG" --run "$RUN" --out "training/runs/$ID"
rm -rf "Resources/models/$ID.new"
mkdir -p Resources/models
cp -r "training/runs/$ID" "Resources/models/$ID.new"
rm -rf "Resources/models/$ID"
mv "Resources/models/$ID.new" "Resources/models/$ID"
$PY -m TextSegmentLib models publish "Resources/models/$ID" --embedded --set-default --modality MR --modality CT
$PY -m training.heldout --model "Resources/models/$ID" --out training/runs/heldout
$PY -m training.robustness --model "Resources/models/$ID" --out training/runs/robustness
