#!/usr/bin/env bash
# Shared by the study scripts (source it): seed lists and the two-process split that keeps both
# cores of a 2-core machine busy, one thread per process, one process per core at most.

# "0-2,5" -> "0,1,2,5" (the seed syntax of labelemb's --seeds).
expand_seeds() {
  local part out=() parts
  IFS=, read -r -a parts <<< "$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  (IFS=,; echo "${out[*]}")
}

# in_two LOG LIST CMD...: runs `CMD... HALF` for the two halves of the comma-separated LIST in
# parallel (the half is the last argument: the value of a --modes or --seeds at the end of CMD),
# appending each process's output to LOG-0.log and LOG-1.log; fails if either fails.
in_two() {
  local log=$1 list=$2; shift 2
  local -a items pids=()
  IFS=, read -r -a items <<< "$list"
  local half=$(( (${#items[@]} + 1) / 2 )) part
  for part in "$(IFS=,; echo "${items[*]:0:half}")" "$(IFS=,; echo "${items[*]:half}")"; do
    [ -n "$part" ] || continue
    "$@" "$part" >> "$log-${#pids[@]}.log" 2>&1 &
    pids+=($!)
  done
  local p status=0
  for p in "${pids[@]}"; do wait "$p" || status=$?; done
  return "$status"
}
