# Stands in for $(MAKE) while sparkflash reads a tree's makefiles with `make -n -B`
# (sparkflash/firmware/makeprobe.py): runs the sub-make exactly as the recipe asks, in the
# same environment (MAKEFLAGS carries -n -B), between two marker lines that say where it
# was started and with which arguments (a recipe's --no-print-directory beats -w).
printf 'sparkflash-submake-enter %s' "$PWD"
for a in "$@"; do printf '\037%s' "$a"; done
printf '\n'
"$SPARKFLASH_MAKE" "$@" MAKE="$SPARKFLASH_SUBMAKE"
rc=$?
printf 'sparkflash-submake-leave\n'
exit $rc
