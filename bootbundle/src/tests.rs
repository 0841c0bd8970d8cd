use super::*;

fn vm(name: &str) -> OwnedVmSpec {
    OwnedVmSpec {
        name: name.into(),
        ram_size: 16 << 20,
        ipa_base: 0x8000_0000,
        image: vec![0xaa; 100],
        load_offset: 0,
        entry_offset: 0,
        cmdline: "suite=basic".into(),
        initrd: Vec::new(),
        vcpus: 1,
        flags: VmFlags::default(),
        start_after: None,
        fixed_pa: None,
        cpu_pct: None,
    }
}

fn build(vms: Vec<OwnedVmSpec>) -> Result<Vec<u8>, BundleError> {
    let mut b = BundleBuilder::new();
    for v in vms {
        b.add(v);
    }
    b.build()
}

#[test]
fn round_trips_every_field() {
    let mut second = vm("victim");
    second.start_after = Some(0);
    second.fixed_pa = Some(0x5000_0000);
    second.flags = VmFlags(VmFlags::PMU);
    second.vcpus = 2;
    second.load_offset = 0x1000;
    second.entry_offset = 0x1004;
    let data = build(vec![vm("attacker"), second]).unwrap();
    let b = Bundle::parse(&data).unwrap();
    assert_eq!(b.vms().len(), 2);
    let v = &b.vms()[1];
    assert_eq!(v.name, "victim");
    assert_eq!(v.image, &[0xaa; 100][..]);
    assert_eq!(v.cmdline, "suite=basic");
    assert_eq!(
        (v.start_after, v.fixed_pa, v.vcpus),
        (Some(0), Some(0x5000_0000), 2)
    );
    assert!(v.flags.pmu());
    assert_eq!((v.load_offset, v.entry_offset), (0x1000, 0x1004));
}

#[test]
fn refuses_bad_headers() {
    let good = build(vec![vm("a")]).unwrap();
    assert_eq!(
        Bundle::parse(&good[..10]).unwrap_err(),
        BundleError::TooShort
    );
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(Bundle::parse(&bad).unwrap_err(), BundleError::BadMagic);
    let mut bad = good.clone();
    bad[8] = 1;
    assert_eq!(
        Bundle::parse(&bad).unwrap_err(),
        BundleError::UnsupportedVersion(1)
    );
    let mut bad = good.clone();
    bad.push(0);
    assert!(matches!(
        Bundle::parse(&bad).unwrap_err(),
        BundleError::BadLength { .. }
    ));
    let mut bad = good.clone();
    bad[12] = 17;
    assert_eq!(
        Bundle::parse(&bad).unwrap_err(),
        BundleError::TooManyVms(17)
    );
    assert_eq!(build(vec![]).unwrap_err(), BundleError::NoVms);
    // Only the management VM: a bundle without VMs of its own is fine.
    let mut b = BundleBuilder::new();
    b.flags = BundleFlags(BundleFlags::MANAGEMENT_VM | BundleFlags::FAULT_INJECTION);
    let data = b.build().unwrap();
    let parsed = Bundle::parse(&data).unwrap();
    assert!(parsed.flags().management_vm() && parsed.flags().fault_injection());
    let mut bad = data.clone();
    bad[28] = 0x80;
    assert_eq!(
        Bundle::parse(&bad).unwrap_err(),
        BundleError::UnknownBundleFlags(0x80)
    );
}

#[test]
fn refuses_bad_entries() {
    type Case = (fn(&mut OwnedVmSpec), BundleError);
    let cases: Vec<Case> = vec![
        (|v| v.name = "".into(), BundleError::BadName { vm: 0 }),
        (|v| v.name = "a b".into(), BundleError::BadName { vm: 0 }),
        (|v| v.ram_size = 0, BundleError::BadRamSize { vm: 0 }),
        (|v| v.ram_size = 5000, BundleError::BadRamSize { vm: 0 }),
        (|v| v.ipa_base = 0x123, BundleError::BadIpaBase { vm: 0 }),
        (
            |v| v.ipa_base = IPA_LIMIT - 4096,
            BundleError::BadIpaBase { vm: 0 },
        ),
        (|v| v.ipa_base = !0xfff, BundleError::BadIpaBase { vm: 0 }),
        (
            |v| v.load_offset = (16 << 20) - 50,
            BundleError::ImageDoesNotFitRam { vm: 0 },
        ),
        (
            |v| v.load_offset = u64::MAX - 10,
            BundleError::ImageDoesNotFitRam { vm: 0 },
        ),
        (
            |v| v.entry_offset = 100,
            BundleError::EntryOutsideImage { vm: 0 },
        ),
        (
            |v| v.cmdline = "a\0b".into(),
            BundleError::BadCmdline { vm: 0 },
        ),
        (
            |v| v.vcpus = 0,
            BundleError::BadVcpuCount { vm: 0, vcpus: 0 },
        ),
        (
            |v| v.vcpus = 9,
            BundleError::BadVcpuCount { vm: 0, vcpus: 9 },
        ),
        (
            |v| v.flags = VmFlags(32),
            BundleError::UnknownFlags { vm: 0, flags: 32 },
        ),
        (
            |v| v.start_after = Some(0),
            BundleError::BadStartAfter { vm: 0 },
        ),
        (
            |v| v.fixed_pa = Some(0x1000),
            BundleError::BadFixedPa { vm: 0 },
        ),
        (
            |v| v.cpu_pct = Some(101),
            BundleError::BadCpuPct { vm: 0, pct: 101 },
        ),
        (
            |v| {
                v.flags = VmFlags(VmFlags::MANAGEMENT);
                v.cpu_pct = Some(10);
            },
            BundleError::ManagementWithCpuPct { vm: 0 },
        ),
    ];
    for (mutate, want) in cases {
        let mut v = vm("a");
        mutate(&mut v);
        assert_eq!(build(vec![v]).unwrap_err(), want);
    }
    assert_eq!(
        build(vec![vm("a"), vm("a")]).unwrap_err(),
        BundleError::DuplicateName { vm: 1 }
    );
}

#[test]
fn refuses_payloads_outside_the_bundle() {
    let mut data = build(vec![vm("a")]).unwrap();
    // image_offset of entry 0 pointing past the end
    let off = HEADER_SIZE + 48;
    data[off..off + 8].copy_from_slice(&(u64::MAX - 4).to_le_bytes());
    assert_eq!(
        Bundle::parse(&data).unwrap_err(),
        BundleError::PayloadOutOfBounds { vm: 0 }
    );
}

#[test]
fn carries_an_initrd_and_the_linux_flag() {
    let mut v = vm("linux");
    v.initrd = vec![7; 33];
    v.flags = VmFlags(VmFlags::LINUX);
    v.entry_offset = 0;
    let data = build(vec![v.clone()]).unwrap();
    let b = Bundle::parse(&data).unwrap();
    assert_eq!(b.vms()[0].initrd, &[7; 33][..]);
    assert!(b.vms()[0].flags.linux());
    v.load_offset = 0x1000;
    assert_eq!(
        build(vec![v]).unwrap_err(),
        BundleError::LinuxWithOffsets { vm: 0 }
    );
}

#[test]
fn carries_the_elf_flag() {
    let mut v = vm("rtos");
    v.flags = VmFlags(VmFlags::ELF | VmFlags::PLATFORM);
    // An ELF file may be larger than RAM: its segments are what is loaded (checked by the
    // hypervisor's layout, not here).
    v.image = vec![0x7f; (16 << 20) + 1];
    let data = build(vec![v.clone()]).unwrap();
    let b = Bundle::parse(&data).unwrap();
    let spec = &b.vms()[0];
    assert!(spec.flags.elf() && !spec.flags.linux() && spec.flags.platform());
    assert_eq!(spec.flags.format(), ImageFormat::Elf);
    assert_eq!(spec.image.len(), (16 << 20) + 1);
    for (load, entry) in [(0x1000, 0), (0, 4)] {
        let mut bad = v.clone();
        (bad.load_offset, bad.entry_offset) = (load, entry);
        assert_eq!(
            build(vec![bad]).unwrap_err(),
            BundleError::ElfWithOffsets { vm: 0 }
        );
    }
    let mut both = v.clone();
    both.flags = VmFlags(VmFlags::ELF | VmFlags::LINUX);
    assert_eq!(
        build(vec![both]).unwrap_err(),
        BundleError::LinuxAndElf { vm: 0 }
    );
}

#[test]
fn formats() {
    assert_eq!(VmFlags(0).format(), ImageFormat::Raw);
    assert_eq!(VmFlags(VmFlags::PMU).format(), ImageFormat::Raw);
    assert_eq!(VmFlags(VmFlags::LINUX).format(), ImageFormat::Linux);
    assert_eq!(VmFlags(VmFlags::ELF).format(), ImageFormat::Elf);
    for f in ImageFormat::ALL {
        assert_eq!(ImageFormat::from_name(f.name()), Some(f));
        assert_eq!(VmFlags(f.flag()).format(), f);
        assert_eq!(f.to_string(), f.name());
    }
    assert_eq!(ImageFormat::from_name("ELF"), None);
    assert_eq!(ImageFormat::from_name("bin"), None);
    let messages = [
        BundleError::ElfWithOffsets { vm: 2 }.to_string(),
        BundleError::LinuxAndElf { vm: 2 }.to_string(),
    ];
    assert_eq!(
        messages[0],
        "VM 2: an ELF image is placed by its program headers: offsets must be 0"
    );
    assert!(messages[1].contains("LINUX and ELF"));
}

#[test]
fn refuses_an_initrd_outside_the_bundle() {
    let mut data = build(vec![vm("a")]).unwrap();
    let off = HEADER_SIZE + 112;
    data[off..off + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    data[off + 8..off + 16].copy_from_slice(&16u64.to_le_bytes());
    assert_eq!(
        Bundle::parse(&data).unwrap_err(),
        BundleError::PayloadOutOfBounds { vm: 0 }
    );
}

#[test]
fn carries_cpu_percentages_and_refuses_inconsistent_ones() {
    let mut a = vm("a");
    a.cpu_pct = Some(50);
    let mut b = vm("b");
    b.cpu_pct = Some(0);
    let mut m = vm("m");
    m.flags = VmFlags(VmFlags::MANAGEMENT);
    let mut builder = BundleBuilder::new();
    builder.add(a.clone());
    builder.add(b);
    builder.add(m.clone());
    builder.add(vm("d"));
    builder.sched_trace_us = 100_000;
    let data = builder.build().unwrap();
    let parsed = Bundle::parse(&data).unwrap();
    let pcts: Vec<_> = parsed.vms().iter().map(|v| v.cpu_pct).collect();
    assert_eq!(pcts, [Some(50), Some(0), None, None]);
    assert!(parsed.vms()[2].flags.management());
    assert_eq!(parsed.sched_trace_us(), 100_000);

    let mut c = vm("c");
    c.cpu_pct = Some(51);
    assert_eq!(
        build(vec![a.clone(), c]).unwrap_err(),
        BundleError::CpuSumOverHundred { sum: 101 }
    );
    let mut m2 = vm("m2");
    m2.flags = VmFlags(VmFlags::MANAGEMENT);
    assert_eq!(
        build(vec![m, m2]).unwrap_err(),
        BundleError::TwoManagementVms { vm: 1 }
    );
    // A byte in the reserved tail of an entry is refused.
    let mut data = build(vec![a]).unwrap();
    data[HEADER_SIZE + 140] = 1;
    assert_eq!(
        Bundle::parse(&data).unwrap_err(),
        BundleError::ReservedNotZero { vm: 0 }
    );
}

#[test]
fn flags_can_be_set_on_an_encoded_bundle() {
    let mut data = build(vec![vm("a")]).unwrap();
    set_flags(&mut data, BundleFlags(BundleFlags::MANAGEMENT_VM)).unwrap();
    assert!(Bundle::parse(&data).unwrap().flags().management_vm());
    assert_eq!(
        set_flags(&mut data, BundleFlags(1 << 9)),
        Err(BundleError::UnknownBundleFlags(1 << 9))
    );
    // Refused flags leave the bundle as it was.
    assert!(Bundle::parse(&data).unwrap().flags().management_vm());
}
