#!/usr/bin/env bash
# Time left until the deadline. `bash timer.sh` prints it for humans; `--seconds` prints seconds.
deadline_file="$(dirname "$0")/.ptb_deadline"
if [ ! -f "$deadline_file" ]; then echo "timer not started" >&2; exit 1; fi
left=$(( $(cat "$deadline_file") - $(date +%s) ))
if [ "$left" -lt 0 ]; then left=0; fi
if [ "${1:-}" = "--seconds" ]; then echo "$left"; exit 0; fi
printf 'Remaining time: %dh %02dm %02ds\n' $((left / 3600)) $((left % 3600 / 60)) $((left % 60))
