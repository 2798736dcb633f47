# SCons runs this right after importing itself, before the SConstruct: compiles of sources
# edited since the last build start now, while SCons reads the SConstruct and decides; SCons
# uses one only where it would run that very command (sparkflash/scons/compile_ahead.py).
import sparkflash.scons.compile_ahead

sparkflash.scons.compile_ahead.start()
