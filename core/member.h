// A member of the cluster as the members table holds it (membership.h): in peer messages
// (Gossip), in the log (WalMembers) and in snapshots.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/version.h"

namespace kv {

enum class MemberState : std::uint8_t { joining = 1, normal = 2, leaving = 3, left = 4 };
inline constexpr std::size_t member_addr_bytes_max = 256;  // a member's announced address

inline std::string_view member_state_name(MemberState s) {
  return s == MemberState::joining ? "joining"
         : s == MemberState::normal ? "normal"
         : s == MemberState::leaving ? "leaving"
                                     : "left";
}

struct Member {
  NodeId id = 0;
  MemberState state = MemberState::normal;
  // The member's incarnation (its process start; higher is later) and the changes of its entry
  // within it. Which of two entries wins is newer() (membership.h).
  std::uint64_t generation = 0;
  std::uint64_t epoch = 0;
  std::string peer_addr;    // HOST:PORT of its peer listener, as it announced it
  std::string client_addr;  // HOST:PORT of its HTTP API, as it announced it
  // A leaving member: reads already go to the ring without it (the second step of a change).
  bool moved = false;
  // Written by the member itself: the hash of the ring view it has applied, and of the view for
  // which it finished pulling the ranges that view gives it (membership.h).
  std::uint64_t ring_seen = 0;
  std::uint64_t streamed = 0;
  bool operator==(const Member&) const = default;
};
}  // namespace kv
