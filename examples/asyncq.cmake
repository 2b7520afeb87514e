# asyncq parses -p/--nprod and -c/--ncon with Abseil flags.
target_link_libraries(asyncq PRIVATE absl::flags absl::flags_parse absl::flags_usage)
