# libFuzzer targets for the security parsers: ACL file, password file, JWT.
# Included by tests/fuzz/CMakeLists.txt (configure with MQTTWS_FUZZ=ON and CC=clang CXX=clang++).
#
#   cmake -S . -B build-fuzz -DMQTTWS_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
#   cmake --build build-fuzz --target fuzz_acl fuzz_password_file fuzz_jwt
#   build-fuzz/tests/fuzz/fuzz_acl -max_total_time=60 tests/fuzz/corpus/acl
#
# (Copy a corpus directory first if new inputs should not land in the source tree.)

set(_mqttws_security_fuzz_dir ${CMAKE_CURRENT_LIST_DIR})
# See the ignore list for why RapidJSON's headers are exempt from one UBSan check.
set(_mqttws_security_ubsan_ignore
    -fsanitize-ignorelist=${_mqttws_security_fuzz_dir}/rapidjson_ubsan_ignorelist.txt)
set(_mqttws_security_fuzz_flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                                -fno-omit-frame-pointer -g ${_mqttws_security_ubsan_ignore})

# Coverage guidance needs the code under test instrumented too, not only the harness. Done once,
# whichever fuzz fragment gets here first.
get_property(_mqttws_core_instrumented GLOBAL PROPERTY MQTTWS_CORE_FUZZ_INSTRUMENTED)
if(NOT _mqttws_core_instrumented)
  target_compile_options(mqttws_core PRIVATE -fsanitize=fuzzer-no-link,address,undefined
                                             -fno-sanitize-recover=undefined
                                             -fno-omit-frame-pointer -g
                                             ${_mqttws_security_ubsan_ignore})
  set_property(GLOBAL PROPERTY MQTTWS_CORE_FUZZ_INSTRUMENTED TRUE)
endif()

function(mqttws_security_fuzz_target name)
  add_executable(${name} ${_mqttws_security_fuzz_dir}/${name}.cpp)
  target_compile_options(${name} PRIVATE ${_mqttws_security_fuzz_flags})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE mqttws_core mqttws_warnings)
endfunction()

mqttws_security_fuzz_target(fuzz_acl)
mqttws_security_fuzz_target(fuzz_password_file)
mqttws_security_fuzz_target(fuzz_jwt)
