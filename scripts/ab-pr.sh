#!/usr/bin/env bash
# A/B of a Kubernetes pull request's control plane against its merge base, for any CI.
#
#   scripts/ab-pr.sh --base-src K8S_AT_MERGE_BASE --head-src K8S_AT_PR_HEAD [options] [-- AB_ARGS]
#   scripts/ab-pr.sh --base-bin DIR --head-bin DIR [options] [-- AB_ARGS]
#
# With --*-src it builds kube-apiserver, kube-scheduler and kube-controller-manager in
# each checkout (`make WHAT=...`, binaries in _output/bin); with --*-bin it takes two
# directories of binaries as they are (etcd may be beside them, on PATH or in
# pykubemark's cache). Then it runs `pykubemark ab SCENARIO --baseline BASE --candidate
# HEAD`, copies report.html, ab.json and every run's directory to --publish, and exits
# with ab's code: 0 no regression, 1 a regression of a metric that fails the comparison
# (the SLO-bearing ones unless --fail-on says otherwise), 2 bad input, 130 interrupted.
#
# Options:
#   --scenario NAME|FILE   the scenario (default: density)
#   --out DIR              ab's output directory (default: ./ab-result)
#   --publish DIR          also copy the results here (default: none, --out is kept)
#   --make-jobs N          parallel jobs of each build (default: 2)
# Environment: PYKUBEMARK, the command to run (default: pykubemark on PATH).
# Everything after -- goes to `pykubemark ab` (e.g. --nodes 100 --repeat 6).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 2; }
die() { echo "ab-pr: $*" >&2; exit 2; }

base_src="" head_src="" base_bin="" head_bin="" scenario="density" out="ab-result"
publish="" jobs=2
ab_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base-src) base_src="$2"; shift 2 ;;
    --head-src) head_src="$2"; shift 2 ;;
    --base-bin) base_bin="$2"; shift 2 ;;
    --head-bin) head_bin="$2"; shift 2 ;;
    --scenario) scenario="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --publish) publish="$2"; shift 2 ;;
    --make-jobs) jobs="$2"; shift 2 ;;
    -h|--help) usage ;;
    --) shift; ab_args=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
read -r -a pykubemark <<< "${PYKUBEMARK:-pykubemark}"

build() {  # build SIDE SRC: the control plane of a Kubernetes checkout; prints its bin dir
  local side="$1" src="$2"
  [[ -f "$src/Makefile" && -d "$src/cmd/kube-apiserver" ]] \
    || die "--$side-src $src is not a Kubernetes checkout"
  echo "ab-pr: building the $side's control plane in $src" >&2
  make -C "$src" -j "$jobs" \
    WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager" >&2 \
    || die "the $side's build failed"
  echo "$src/_output/bin"
}

side_dir() {  # side_dir SIDE SRC BIN
  local side="$1" src="$2" bin="$3"
  if [[ -n "$src" && -n "$bin" ]]; then die "--$side-src and --$side-bin exclude each other"; fi
  if [[ -n "$bin" ]]; then
    [[ -d "$bin" ]] || die "--$side-bin $bin is not a directory"
    echo "$bin"
  elif [[ -n "$src" ]]; then
    build "$side" "$src"
  else
    die "give --$side-src (a Kubernetes checkout) or --$side-bin (its binaries)"
  fi
}

base=$(side_dir base "$base_src" "$base_bin")
head=$(side_dir head "$head_src" "$head_bin")
echo "ab-pr: baseline $base, candidate $head" >&2

code=0
"${pykubemark[@]}" ab "$scenario" --baseline "$base" --candidate "$head" --out "$out" \
  "${ab_args[@]}" || code=$?

if [[ -f "$out/report.html" && -n "$publish" ]]; then
  mkdir -p "$publish"
  cp -r "$out/report.html" "$out/ab.json" "$out/runs" "$publish/"
  echo "ab-pr: published $publish/report.html" >&2
fi
case "$code" in
  0) echo "ab-pr: no regression" >&2 ;;
  1) echo "ab-pr: REGRESSION (see $out/report.html)" >&2 ;;
  *) echo "ab-pr: pykubemark ab exited $code" >&2 ;;
esac
exit "$code"
