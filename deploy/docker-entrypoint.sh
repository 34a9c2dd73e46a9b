#!/bin/sh
# docker-entrypoint.sh - choose the model, then run igserve.
#
# For `serve` (the default command) without --model or IGSERVE_MODEL:
#   1. /weights/resnet50.tv_in1k.safetensors, else the first /weights/*.safetensors;
#   2. else, with IGSERVE_FETCH_WEIGHTS=1, scripts/fetch-weights into /weights first;
#   3. else the bundled demo model (models/demo/shapes-resnet.safetensors).
# Any other command (predict, attribute, version) is passed to igserve as it is.
set -eu

weights=${IGSERVE_WEIGHTS_DIR:-/weights}
demo=/opt/igserve/models/demo/shapes-resnet.safetensors

case "${1:-serve}" in
-*) set -- serve "$@" ;;
esac
[ $# -gt 0 ] || set -- serve

pick_weights() {
	if [ -f "$weights/resnet50.tv_in1k.safetensors" ]; then
		echo "$weights/resnet50.tv_in1k.safetensors"
		return
	fi
	for f in "$weights"/*.safetensors; do
		if [ -f "$f" ]; then
			echo "$f"
			return
		fi
	done
}

if [ "$1" = serve ] && [ -z "${IGSERVE_MODEL:-}" ]; then
	for arg in "$@"; do
		case "$arg" in
		--model | --model=*) exec /usr/local/bin/igserve "$@" ;;
		esac
	done
	model=$(pick_weights)
	if [ -z "$model" ] && [ "${IGSERVE_FETCH_WEIGHTS:-0}" = 1 ]; then
		/opt/igserve/scripts/fetch-weights --dir "$weights" resnet50.tv_in1k ||
			echo "docker-entrypoint: fetch-weights failed; serving the demo model" >&2
		model=$(pick_weights)
	fi
	IGSERVE_MODEL=${model:-$demo}
	export IGSERVE_MODEL
	echo "docker-entrypoint: model $IGSERVE_MODEL" >&2
fi
exec /usr/local/bin/igserve "$@"
