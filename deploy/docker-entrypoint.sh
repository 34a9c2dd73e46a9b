#!/bin/sh
# docker-entrypoint.sh - fetch weights when asked, then run igserve.
#
# For `serve` (the default command) without --model or IGSERVE_MODEL, igserve itself serves
# $IGSERVE_WEIGHTS_DIR/resnet50.tv_in1k.safetensors (/weights) when present, else the bundled
# demo model (models/demo/ under the working directory /opt/igserve). This script adds:
#   - with IGSERVE_FETCH_WEIGHTS=1 and no resnet50.tv_in1k.safetensors in /weights, it runs
#     scripts/fetch-weights into /weights first (offline: the demo model is served);
#   - other weights dropped into /weights (the first *.safetensors) are served too.
# Any other command (predict, attribute, version) is passed to igserve as it is.
set -eu

weights=${IGSERVE_WEIGHTS_DIR:-/weights}
default=resnet50.tv_in1k

case "${1:-serve}" in
-*) set -- serve "$@" ;;
esac
[ $# -gt 0 ] || set -- serve

# choosing: whether igserve is left to choose its model (serve, no --model, no IGSERVE_MODEL).
choosing() {
	[ "$1" = serve ] && [ -z "${IGSERVE_MODEL:-}" ] || return 1
	for arg in "$@"; do
		case "$arg" in
		--model | --model=*) return 1 ;;
		esac
	done
	return 0
}

if choosing "$@" && [ ! -f "$weights/$default.safetensors" ]; then
	if [ "${IGSERVE_FETCH_WEIGHTS:-0}" = 1 ]; then
		/opt/igserve/scripts/fetch-weights --dir "$weights" "$default" ||
			echo "docker-entrypoint: fetch-weights failed; igserve serves the demo model" >&2
	fi
	if [ ! -f "$weights/$default.safetensors" ]; then
		for f in "$weights"/*.safetensors; do
			if [ -f "$f" ]; then
				IGSERVE_MODEL=$f
				export IGSERVE_MODEL
				break
			fi
		done
	fi
fi
exec /usr/local/bin/igserve "$@"
