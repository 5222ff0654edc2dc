#!/bin/bash
# Re-records every fixture listed in topologies.txt, one Linux boot at a time
# (boots are CPU-heavy; running them in parallel starves the other users).
# usage: record-all.sh [NAME...]   (default: every topology)
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p fixtures
grep -v '^\s*#' topologies.txt | grep -v '^\s*$' | while read -r name args; do
  if [ $# -gt 0 ] && [[ ! " $* " =~ " $name " ]]; then continue; fi
  echo "recording $name" >&2
  ./record.sh "$args" > "fixtures/$name.txt.new"
  mv "fixtures/$name.txt.new" "fixtures/$name.txt"
done
