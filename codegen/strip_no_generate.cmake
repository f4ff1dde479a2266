# cmake -DIN=<file.proto> -DOUT=<copy.proto> -P strip_no_generate.cmake
#
# Copies a .proto without `option (pb_c_file).no_generate = true;` and
# its `import "protobuf-c/protobuf-c.proto";`, so that protoc-c generates
# its C bindings. loom/options.proto carries that option for the files
# that import it (their .pb-c.h must not include a loom/options.pb-c.h),
# and protobuf-c.proto carries it for everyone; the plugin alone needs
# their bindings, to unpack the options protoc hands it.
file(READ "${IN}" text)
string(REGEX REPLACE "\noption \\(pb_c_file\\)\\.no_generate = true;" "\n"
       stripped "${text}")
if(stripped STREQUAL text)
  message(FATAL_ERROR "${IN}: no line `option (pb_c_file).no_generate = true;`")
endif()
string(REPLACE "\nimport \"protobuf-c/protobuf-c.proto\";" "\n" stripped
       "${stripped}")
file(WRITE "${OUT}.tmp" "${stripped}")
# Only a changed copy touches OUT, so its bindings are not rebuilt
# needlessly.
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
