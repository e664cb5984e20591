#!/usr/bin/env bash
# Rebuild the embedded default model on a CPU in one command, continuing from the shipped weights (warm start):
#   bash training/build_default_model.sh [MINUTES] [INIT_BUNDLE]
# bank of 3D variants (about 10 s each; resumable) -> train (MINUTES, default 270, one thread, warm start from
# INIT_BUNDLE, default the newest shipped brain model; resumes a stopped run) -> whole-volume validation of the run's
# best and last weights against INIT_BUNDLE (nothing is shipped unless one beats it) -> export (fp16 bundle) ->
# per-structure mask thresholds calibrated on the validation variants -> the package's embedded models folder
# (TextSegmentLib/resources/models, named by TextSegmentLib.resources.EMBEDDED_MODELS_DIR) -> catalog entry (embedded,
# default; the previous embedded model leaves the package and the catalog, git history keeps it) -> held-out and
# robustness reports on the MNI152 T1.
# Validation uses held-out variants of the training subject; the MNI152 image is only ever used by the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-270}
PY=.venv/bin/python
# where the embedded bundles live (one constant in the package: TextSegmentLib/resources/__init__.py)
MODELS=$($PY -c "import os; from TextSegmentLib.resources import EMBEDDED_MODELS_DIR as d; print(os.path.relpath(d))")
LATEST=$(ls -d "$MODELS"/textsegment-brain-lite-v* | sort -V | tail -1)
INIT=${2:-$LATEST}
CONFIG=${CONFIG:-training/configs/brain_v13_128.yaml}
# the validation variants every version since 0.2 was chosen and calibrated on (the v0.2-v0.8 bank's); a config whose
# own bank differs (v0.9: stronger warps) is still judged on them, so that versions stay comparable
VAL_CONFIG=${VAL_CONFIG:-training/configs/brain_v8_128.yaml}
export OMP_NUM_THREADS=1 PYTHONPATH="$PWD"
# the bundle id and the run folder follow the config's name and version (0.3.0 -> textsegment-brain-lite-v0.3.0)
ID=$($PY -c "from training.config import load_config as l; c = l('$CONFIG'); print(f\"{c['name']}-v{c['version']}\")")
RUN=training/runs/$ID-run
$PY -m training.prepare --config "$CONFIG" --bank
[ "$VAL_CONFIG" = "$CONFIG" ] || $PY -m training.prepare --config "$VAL_CONFIG" --bank
$PY -m training.train --config "$CONFIG" --out "$RUN" --init "$INIT" --minutes "$MINUTES" --threads 1
# ship only what beats the model it started from on the bank's validation variants (whole volumes, T1 and T2-like)
set +e
$PY -m training.validate3d --config "$VAL_CONFIG" --run "$RUN" --choose "$INIT" --limit 4 > "$RUN/choice.json"
VERDICT=$?
set -e
if [ "$VERDICT" = 3 ]; then
  echo "the run does not beat $INIT on the validation variants ($RUN/choice.json); nothing shipped"
  exit 0
elif [ "$VERDICT" != 0 ]; then
  echo "validation failed ($VERDICT)"; exit "$VERDICT"
fi
WEIGHTS=$($PY -c "import json; print(json.load(open('$RUN/choice.json'))['choice'])")
$PY -m training.export --config "$CONFIG" --run "$RUN" --out "training/runs/$ID" --weights "$WEIGHTS"
# per-structure mask thresholds, chosen on the same validation variants, into the exported card (before publishing)
$PY -m training.calibrate --config "$VAL_CONFIG" --bundle "training/runs/$ID" --limit 4
rm -rf "$MODELS/$ID.new"
mkdir -p "$MODELS"
cp -r "training/runs/$ID" "$MODELS/$ID.new"
# the shipped bundle is moved aside, never deleted, until the new one is in place
rm -rf "$MODELS/$ID.old"
[ ! -e "$MODELS/$ID" ] || mv "$MODELS/$ID" "$MODELS/$ID.old"
mv "$MODELS/$ID.new" "$MODELS/$ID"
rm -rf "$MODELS/$ID.old"
# the one embedded model: --only-embedded takes the other embedded entries out of the catalog and their folders away
$PY -m TextSegmentLib models publish "$MODELS/$ID" --embedded --set-default --only-embedded --modality MR --modality CT
$PY -m training.heldout --model "$MODELS/$ID" --out training/runs/heldout
$PY -m training.robustness --model "$MODELS/$ID" --out training/runs/robustness
