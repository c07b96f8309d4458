# Sourced by the demos. ping_matrix PREFIX POD...: one ping from each pod (row) to every other (column), by
# the addresses in the caller's ADDR map (pod netns -> address), shown without PREFIX; returns 1 if any failed.
ping_matrix() {
  local prefix=$1; shift
  local pods=("$@") fail=0 p q
  printf '  %-16s' ""; for q in "${pods[@]}"; do printf '%-16s' "${q#"$prefix"}"; done; echo
  for p in "${pods[@]}"; do
    printf '  %-16s' "${p#"$prefix"}"
    for q in "${pods[@]}"; do
      if [ "$p" = "$q" ]; then printf '%-16s' "-"; continue; fi
      if ip netns exec "$p" ping -c1 -W2 "${ADDR[$q]}" >/dev/null 2>&1; then printf '%-16s' "ok"; else printf '%-16s' "FAIL"; fail=1; fi
    done
    echo
  done
  return $fail
}
