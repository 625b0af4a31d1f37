# The C code a page shows must compile: the first ```c block after the heading HEADING of DOC is written to WORK and
# compiled and linked with CC against the public header and LIB_DIR's libdynrl.
#   cmake -DCC=<cc> -DROOT=<source dir> -DDOC=docs/api.md -DHEADING="## A minimal trainer" -DLIB_DIR=<dir> -DWORK=<dir>
#         -P check_doc_c.cmake
cmake_minimum_required(VERSION 3.22)
foreach(var CC ROOT DOC HEADING LIB_DIR WORK)
  if(NOT ${var})
    message(FATAL_ERROR "usage: cmake -DCC=... -DROOT=... -DDOC=... -DHEADING=... -DLIB_DIR=... -DWORK=... -P check_doc_c.cmake")
  endif()
endforeach()
file(READ "${ROOT}/${DOC}" text)
string(FIND "${text}" "${HEADING}\n" at)
if(at LESS 0)
  message(FATAL_ERROR "check_doc_c: ${DOC} has no heading '${HEADING}'")
endif()
string(SUBSTRING "${text}" ${at} -1 text)
string(FIND "${text}" "```c\n" open)
if(open LESS 0)
  message(FATAL_ERROR "check_doc_c: no ```c block after '${HEADING}' in ${DOC}")
endif()
math(EXPR open "${open} + 5")
string(SUBSTRING "${text}" ${open} -1 text)
string(FIND "${text}" "```" close)
string(SUBSTRING "${text}" 0 ${close} code)
file(MAKE_DIRECTORY "${WORK}")
file(WRITE "${WORK}/snippet.c" "${code}")
execute_process(COMMAND "${CC}" -std=c11 -Wall -Wextra -Werror -I${ROOT}/include "${WORK}/snippet.c" -L${LIB_DIR}
                        -ldynrl -o "${WORK}/snippet"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_doc_c: the code under '${HEADING}' in ${DOC} does not compile:\n${out}${err}")
endif()
message(STATUS "check_doc_c: the code under '${HEADING}' in ${DOC} compiles and links")
