#!/usr/bin/env bash
# Fold models for calibrating the zoo models' gene confidence on several validation folds
# (`dga calibrate MODEL --fold-models ...`), made on a CPU by `dga train` alone:
#   bash benchmarks/make_fold_models.sh [OUT]     (default OUT: checkpoints/calibration)
# zoo:drosophila: its own recipe (trial 10 of experiments/drosophila.toml), one model per held-out
#   genome (leave-one-genome-out: each never saw its validation genome).
# zoo:aarenosa: its own recipe (trial 4 of experiments/arenosa_finetune.toml, fine-tuned from
#   zoo:athaliana, which never saw A. arenosa), folds 0-2 of chromosome 2.
# zoo:athaliana: zoo:athaliana is itself the fold-0 model (chr1 folds 1-4 trained it); folds 1 and 2
#   are zoo:athaliana fine-tuned with that fold held out. Those weights had seen folds 1 and 2
#   before the fine-tuning, so their validation genes are not unseen ones (the card says so).
set -euo pipefail
DGA=${DGA:-.venv/bin/dga}
OUT=${1:-checkpoints/calibration}
train() { name=$1; shift; [ -f "$OUT/$name/bundle/weights.pt" ] || "$DGA" train "$@" --set tracking=none --set checkpoint_dir="$OUT/$name"; }
for k in 0 1 2; do
  train drosophila-fold-$k experiments/drosophila.toml --set fold=$k --set hidden_size=32 --set num_layers=2 \
    --set bases_per_step=8 --set window=240 --set lr=0.01593763968078406 --set class_weighting=none
done
for k in 0 1 2; do
  train aarenosa-fold-$k experiments/arenosa_finetune.toml --set fold=$k --set lr=0.00010472390864813129 \
    --set epochs=4 --set freeze_layers=1
done
for k in 1 2; do
  train athaliana-fold-$k experiments/athaliana.toml --set fold=$k --set init_from=zoo:athaliana \
    --set freeze_layers=1 --set lr=0.0001 --set epochs=2 --set bases_per_epoch=2000000 --set batch_size=16 \
    --set val_batch_size=16 --set val_overlap=0.05
done
