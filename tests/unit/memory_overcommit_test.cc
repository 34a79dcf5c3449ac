#include <cstdint>

#include "gtest/gtest.h"
#include "wooly/memory/overcommit.h"

namespace wooly::memory {
namespace {

TEST(OvercommitTest, AdmitsUpToPhysicalTimesOnePlusPercentThenOom) {
  Overcommit oc({.physical_bytes = 1000, .overcommit_percent = 20});
  EXPECT_EQ(oc.AdmissionLimit(1), 1200u);
  EXPECT_TRUE(oc.Admit(1, 1000).ok());
  EXPECT_TRUE(oc.Admit(2, 199).ok());
  EXPECT_TRUE(oc.CanAdmit(2, 1));
  EXPECT_TRUE(oc.Admit(2, 1).ok());  // exactly at the limit
  EXPECT_FALSE(oc.CanAdmit(1, 1));
  absl::Status oom = oc.Admit(1, 1);
  EXPECT_EQ(oom.code(), absl::StatusCode::kResourceExhausted);  // CUDA_ERROR_OUT_OF_MEMORY
  EXPECT_NE(oom.message().find("out of memory"), absl::string_view::npos);
  EXPECT_EQ(oc.Node().allocated, 1200u);  // the refusal charged nothing
  EXPECT_EQ(oc.Node().overcommitted, 200u);
  EXPECT_EQ(oc.Client(1).allocated, 1000u);
  EXPECT_EQ(oc.Client(2).allocated, 200u);
  ASSERT_TRUE(oc.Release(2, 1).ok());
  EXPECT_TRUE(oc.Admit(1, 1).ok());
  EXPECT_TRUE(oc.Admit(1, 0).ok());  // nothing asked, nothing refused
}

// Lowering the capacity (the device had less room than configured) shrinks
// what eviction plans with, never admission, and never rises above the
// configured physical bytes.
TEST(OvercommitTest, LoweredCapacityShrinksPhysicalFreeButNotAdmission) {
  Overcommit oc({.physical_bytes = 1000, .overcommit_percent = 20});
  EXPECT_EQ(oc.physical_capacity(), 1000u);
  EXPECT_EQ(oc.Node().physical_capacity, 1000u);
  oc.NotePhysical(600);
  EXPECT_EQ(oc.PhysicalFree(), 400u);
  EXPECT_EQ(oc.PhysicalOver(), 0u);
  oc.SetPhysicalCapacity(800);
  EXPECT_EQ(oc.PhysicalFree(), 200u);
  oc.SetPhysicalCapacity(500);  // below what chunks hold already
  EXPECT_EQ(oc.PhysicalFree(), 0u);
  EXPECT_EQ(oc.PhysicalOver(), 100u);
  EXPECT_EQ(oc.Node().physical_capacity, 500u);
  EXPECT_EQ(oc.Node().physical_bytes, 1000u);
  // Admission still follows the configured physical bytes.
  EXPECT_EQ(oc.AdmissionLimit(1), 1200u);
  EXPECT_TRUE(oc.Admit(1, 1200).ok());
  EXPECT_EQ(oc.Node().overcommitted, 200u);
  oc.SetPhysicalCapacity(5000);  // clamped to the configured bytes
  EXPECT_EQ(oc.physical_capacity(), 1000u);
  EXPECT_EQ(oc.PhysicalFree(), 400u);
}

TEST(OvercommitTest, ZeroPercentIsExactlyPhysical) {
  Overcommit oc({.physical_bytes = 4096, .overcommit_percent = 0});
  EXPECT_TRUE(oc.Admit(7, 4096).ok());
  EXPECT_EQ(oc.Admit(7, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(oc.Node().overcommitted, 0u);
}

TEST(OvercommitTest, OneRequestLargerThanTheLimit) {
  Overcommit oc({.physical_bytes = 100, .overcommit_percent = 50});
  EXPECT_EQ(oc.Admit(1, 151).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(oc.Admit(1, 150).ok());
  EXPECT_EQ(oc.Admit(1, UINT64_MAX).code(), absl::StatusCode::kResourceExhausted);
}

TEST(OvercommitTest, PerClientOverride) {
  Overcommit oc({.physical_bytes = 1000, .overcommit_percent = 0});
  oc.SetClientOverride(2, 50);  // may overcommit the node to 1500
  oc.SetClientOverride(3, 0);
  EXPECT_EQ(oc.AdmissionLimit(1), 1000u);
  EXPECT_EQ(oc.AdmissionLimit(2), 1500u);
  EXPECT_EQ(oc.Client(2).admission_limit, 1500u);
  EXPECT_EQ(oc.Client(2).overcommit_percent, 50u);
  EXPECT_TRUE(oc.Admit(1, 900).ok());
  EXPECT_EQ(oc.Admit(1, 101).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(oc.Admit(2, 600).ok());  // node at 1500
  EXPECT_EQ(oc.Admit(2, 1).code(), absl::StatusCode::kResourceExhausted);
  // The node is past the others' limits: they get nothing until it drops.
  EXPECT_EQ(oc.Admit(1, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(oc.Admit(3, 1).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(oc.Release(2, 500).ok());  // node at 1000
  EXPECT_EQ(oc.Admit(3, 1).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(oc.Release(1, 1).ok());
  EXPECT_TRUE(oc.Admit(3, 1).ok());
  // Clearing the override falls back to the server's percentage.
  oc.SetClientOverride(2, std::nullopt);
  EXPECT_EQ(oc.AdmissionLimit(2), 1000u);
  EXPECT_EQ(oc.Admit(2, 1).code(), absl::StatusCode::kResourceExhausted);
}

TEST(OvercommitTest, OverrideBelowTheServerDefault) {
  Overcommit oc({.physical_bytes = 1000, .overcommit_percent = 50});
  oc.SetClientOverride(9, 10);
  EXPECT_TRUE(oc.Admit(1, 1050).ok());
  EXPECT_TRUE(oc.Admit(9, 50).ok());  // node at 1100 = 9's limit
  EXPECT_EQ(oc.Admit(9, 1).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(oc.Admit(1, 400).ok());  // 1's limit is 1500
}

TEST(OvercommitTest, ReleaseMoreThanAdmittedChangesNothing) {
  Overcommit oc({.physical_bytes = 1000, .overcommit_percent = 0});
  ASSERT_TRUE(oc.Admit(1, 10).ok());
  EXPECT_EQ(oc.Release(1, 11).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(oc.Release(2, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(oc.Client(1).allocated, 10u);
  EXPECT_EQ(oc.Node().allocated, 10u);
}

TEST(OvercommitTest, HugeSizesSaturateInsteadOfWrapping) {
  Overcommit oc({.physical_bytes = uint64_t{1} << 63, .overcommit_percent = 300});
  EXPECT_EQ(oc.AdmissionLimit(1), UINT64_MAX);
  EXPECT_TRUE(oc.Admit(1, UINT64_MAX - 1).ok());
  EXPECT_TRUE(oc.Admit(1, 1).ok());
  EXPECT_EQ(oc.Admit(1, 1).code(), absl::StatusCode::kResourceExhausted);
}

TEST(OvercommitTest, LedgerSumsPerClientAndNode) {
  Overcommit oc({.physical_bytes = 100, .overcommit_percent = 100});
  ASSERT_TRUE(oc.Admit(1, 80).ok());
  ASSERT_TRUE(oc.Admit(2, 60).ok());
  oc.NoteResident(1, 50);
  oc.NoteSwapped(1, 30);
  oc.NoteResident(2, 20);
  oc.NoteShared(2, 40);
  oc.NoteShared(1, 0);
  oc.NotePhysical(70);  // 50 + 20 private
  oc.NotePhysical(40);  // one shared chunk of 40 ...
  oc.NoteDedupPhysical(40);
  oc.NoteShared(1, 40);  // ... mapped by both clients
  oc.NoteHostPool(30);
  oc.NoteSwapOut(30);
  oc.NoteSwapIn(10);
  oc.NoteSwapIn(5);
  oc.NoteResident(99, 1000);  // unknown client: ignored

  ClientUsage c1 = oc.Client(1);
  EXPECT_EQ(c1.allocated, 80u);
  EXPECT_EQ(c1.resident, 50u);
  EXPECT_EQ(c1.swapped_out, 30u);
  EXPECT_EQ(c1.shared, 40u);
  NodeUsage n = oc.Node();
  EXPECT_EQ(n.physical_bytes, 100u);
  EXPECT_EQ(n.admission_limit, 200u);
  EXPECT_EQ(n.allocated, 140u);
  EXPECT_EQ(n.overcommitted, 40u);
  EXPECT_EQ(n.physical_used, 110u);
  EXPECT_EQ(oc.PhysicalFree(), 0u);  // over: never negative
  EXPECT_EQ(n.resident, 70u);
  EXPECT_EQ(n.swapped_out, 30u);
  EXPECT_EQ(n.host_pool_used, 30u);
  EXPECT_EQ(n.swap_out_bytes, 30u);
  EXPECT_EQ(n.swap_outs, 1u);
  EXPECT_EQ(n.swap_in_bytes, 15u);
  EXPECT_EQ(n.swap_ins, 2u);
  EXPECT_EQ(n.dedup_physical, 40u);
  EXPECT_EQ(n.dedup_mapped, 80u);
  EXPECT_EQ(n.dedup_saved, 40u);
  EXPECT_EQ(n.clients, 2u);
  EXPECT_EQ(oc.Clients().size(), 2u);

  // Removing a client takes what it still had off the node's sums.
  oc.RemoveClient(1);
  n = oc.Node();
  EXPECT_EQ(n.allocated, 60u);
  EXPECT_EQ(n.resident, 20u);
  EXPECT_EQ(n.swapped_out, 0u);
  EXPECT_EQ(n.dedup_mapped, 40u);
  EXPECT_EQ(n.clients, 1u);
  EXPECT_EQ(oc.Client(1).allocated, 0u);
}

}  // namespace
}  // namespace wooly::memory
