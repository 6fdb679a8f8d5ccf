#!/usr/bin/env bash
# The reference study, cell by cell (suites/fashion_mnist_study.yaml): each training budget is a number of
# training images seen, the same at every size (5k short, 25k long), so the epochs differ per size.
# Two trials at a time with one thread each (faster in all than one trial with two threads on 2 cores).
# Rerunning skips what is done and resumes what is not; then: mixbench report (see reports/fashion_mnist_study).
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=suites/fashion_mnist_study.yaml
RUN=(mixbench run "$SUITE" --jobs "${JOBS:-2}" --threads "${THREADS:-1}" --no-live "$@")
# Robustness in the long-budget cells: two corruptions (noise, digital) at severity 3, half the image occluded, FGSM.
ROBUST=(--set 'evaluation.corruptions=[gaussian_noise,contrast]' --set 'evaluation.severities=[3]'
        --set 'evaluation.occlusion=[0.5]' --set evaluation.fgsm=true)
status=0
for cell in fmnist_50:10:50 fmnist_250:2:10 fmnist_500:1:5; do
  IFS=: read -r label short long <<<"$cell"
  "${RUN[@]}" --only "dataset=$label" --set "recipe.epochs=$short" || status=1
  "${RUN[@]}" --only "dataset=$label" --set "recipe.epochs=$long" "${ROBUST[@]}" || status=1
done
exit $status
