# Runs the conformance kit and checks what it says, so that tests can prove
# the kit fails what it must fail.
#
#   cmake -DKIT=<kit> [-DPLUGIN=<file>] [-DKIT_ARGS="<args>"] -DEXPECT_EXIT=<n>
#         -DEXPECT_1=<regex> [-DEXPECT_2=<regex> ...] -P expect_output.cmake
#
# Each EXPECT_<i> must match the kit's stdout+stderr; the exit status must be
# EXPECT_EXIT.
if(NOT KIT OR NOT DEFINED EXPECT_EXIT)
  message(FATAL_ERROR "expect_output.cmake: KIT and EXPECT_EXIT are required")
endif()
separate_arguments(_args UNIX_COMMAND "${KIT_ARGS}")
set(_command "${KIT}")
if(PLUGIN)
  list(APPEND _command "${PLUGIN}")
endif()
list(APPEND _command ${_args})
execute_process(COMMAND ${_command}
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
set(_all "${_out}${_err}")
list(JOIN _command " " _shown)
set(_failed FALSE)
if(NOT "${_rc}" STREQUAL "${EXPECT_EXIT}")
  message(SEND_ERROR "exit status ${_rc}, expected ${EXPECT_EXIT}")
  set(_failed TRUE)
endif()
set(_i 1)
while(DEFINED EXPECT_${_i})
  if(NOT _all MATCHES "${EXPECT_${_i}}")
    message(SEND_ERROR "output does not match: ${EXPECT_${_i}}")
    set(_failed TRUE)
  endif()
  math(EXPR _i "${_i} + 1")
endwhile()
if(_failed)
  message(FATAL_ERROR "command: ${_shown}\n--- output ---\n${_all}")
endif()
message(STATUS "${_shown}: as expected")
