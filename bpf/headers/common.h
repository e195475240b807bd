// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// What detector.c and libbpf's headers (bpf/, from update.sh) take from the
// kernel's UAPI headers, so that the program builds with -nostdinc and
// comes out the same whatever the host's architecture and kernel headers.
// The values are the kernel's ABI, as in include/uapi/linux/bpf.h and the
// integer types under it (asm-generic/int-ll64.h, linux/types.h), which
// every architecture shares; a new use adds what it needs here.

#ifndef __AGENTCGROUP_COMMON_H__
#define __AGENTCGROUP_COMMON_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;

typedef __u16 __le16;
typedef __u16 __be16;
typedef __u32 __le32;
typedef __u32 __be32;
typedef __u64 __le64;
typedef __u64 __be64;
typedef __u32 __wsum;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_HASH_OF_MAPS = 13,
	BPF_MAP_TYPE_RINGBUF = 27,
};

// map_flags
enum {
	BPF_F_NO_PREALLOC = (1U << 0),
};

// flags of bpf_map_update_elem
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_LOCK = 4,
};

#endif /* __AGENTCGROUP_COMMON_H__ */
