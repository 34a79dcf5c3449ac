# The shared-memory channel (proto/channel.h): rings, doorbells, fd passing,
# a dead or misbehaving peer.
wooly_cc_test(NAME channel_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/channel_test.cc
  DEPS wooly::wire
  LABELS unit)
