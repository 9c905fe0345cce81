//! TensorBoard event files: the TFRecord framing and its CRCs, read back byte by byte, and the
//! `Event` messages decoded (tools/tensorboard_check.py reads the CLI's logs with TensorBoard's
//! own loader).

use gradtape::summary::proto::{event::What, summary::value::Kind, Event};
use gradtape::summary::{masked_crc32c, SummaryWriter};
use gradtape::{DType, Tensor};
use prost::Message;

/// The records of an event file, each checked against its length and payload CRCs.
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(
            len_crc,
            masked_crc32c(len_bytes),
            "length CRC of record {}",
            out.len()
        );
        let payload = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(
            crc,
            masked_crc32c(payload),
            "payload CRC of record {}",
            out.len()
        );
        out.push(payload.to_vec());
        at += 16 + len;
    }
    assert_eq!(at, bytes.len(), "a partial record at the end");
    out
}

#[test]
#[allow(clippy::manual_rotate)] // TFRecord's formula as its specification writes it
fn the_crc_is_tfrecords_masked_crc32c() {
    // CRC-32C's check value (RFC 3720), then TFRecord's mask: rotate right by 15, add a constant
    let crc = 0xE306_9283u32;
    let masked = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
    assert_eq!(masked_crc32c(b"123456789"), masked);
}

#[test]
fn events_are_framed_crc_checked_and_hold_the_values() {
    let dir = std::env::temp_dir().join(format!("gradtape-summary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = {
        let mut w = SummaryWriter::create(&dir).unwrap();
        for step in 0..5 {
            w.scalar("loss", 1.0 / (step + 1) as f64, step).unwrap();
        }
        let values = Tensor::from_vec((0..100).map(|v| v as f32).collect(), &[10, 10]).unwrap();
        w.histogram("layer/kernel", &values, 4).unwrap();
        w.path().to_path_buf()
        // dropped here: the buffer reaches the file without an explicit flush
    };
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let events: Vec<Event> = records(&std::fs::read(&path).unwrap())
        .iter()
        .map(|r| Event::decode(&r[..]).unwrap())
        .collect();
    assert_eq!(events.len(), 7);
    assert_eq!(
        events[0].what,
        Some(What::FileVersion("brain.Event:2".into()))
    );
    for (i, e) in events[1..6].iter().enumerate() {
        assert_eq!(e.step, i as i64);
        assert!(e.wall_time > 1.6e9);
        let Some(What::Summary(s)) = &e.what else {
            panic!("event {i} is not a summary")
        };
        assert_eq!(s.value[0].tag, "loss");
        assert_eq!(
            s.value[0].value,
            Some(Kind::SimpleValue(1.0 / (i + 1) as f32))
        );
    }
    let Some(What::Summary(s)) = &events[6].what else {
        panic!("no histogram")
    };
    let Some(Kind::Histo(h)) = &s.value[0].value else {
        panic!("not a histogram")
    };
    assert_eq!((h.min, h.max, h.num, h.sum), (0.0, 99.0, 100.0, 4950.0));
    assert_eq!(h.bucket.iter().sum::<f64>(), 100.0);
    assert_eq!(h.bucket.len(), h.bucket_limit.len());
    assert_eq!(*h.bucket_limit.last().unwrap(), 99.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_histogram_of_equal_or_no_values_and_a_bad_logdir() {
    let dir = std::env::temp_dir().join(format!("gradtape-summary2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = SummaryWriter::create(&dir).unwrap();
    w.histogram("same", &Tensor::ones(&[4], DType::F64).unwrap(), 0)
        .unwrap();
    w.histogram("nan", &Tensor::from_vec(vec![f32::NAN], &[1]).unwrap(), 0)
        .unwrap();
    w.flush().unwrap();
    let events: Vec<Event> = records(&std::fs::read(w.path()).unwrap())
        .iter()
        .map(|r| Event::decode(&r[..]).unwrap())
        .collect();
    let histo = |e: &Event| match &e.what {
        Some(What::Summary(s)) => match &s.value[0].value {
            Some(Kind::Histo(h)) => h.clone(),
            _ => panic!(),
        },
        _ => panic!(),
    };
    let same = histo(&events[1]);
    assert_eq!(
        (same.bucket.clone(), same.bucket_limit.clone()),
        (vec![4.0], vec![1.0])
    );
    assert_eq!(histo(&events[2]).num, 0.0); // non-finite values are left out
                                            // a log directory that is a file
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = SummaryWriter::create(&file).err().unwrap().to_string();
    assert!(err.contains("a-file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_writers_in_one_folder_and_second_keep_both_runs() {
    // Issue 20: the second writer's `File::create` truncated the first one's file.
    let dir = std::env::temp_dir().join(format!("gradtape-summary-two-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = {
        let mut first = SummaryWriter::create(&dir).unwrap();
        first.scalar("loss", 1.0, 0).unwrap();
        first.flush().unwrap();
        let mut second = SummaryWriter::create(&dir).unwrap();
        second.scalar("loss", 2.0, 0).unwrap();
        (first.path().to_path_buf(), second.path().to_path_buf())
    };
    assert_ne!(a, b);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for (path, want) in [(&a, 1.0f32), (&b, 2.0)] {
        let events = records(&std::fs::read(path).unwrap());
        assert_eq!(events.len(), 2, "{}", path.display());
        let Some(What::Summary(s)) = Event::decode(&events[1][..]).unwrap().what else {
            panic!("no summary in {}", path.display())
        };
        let Some(Kind::SimpleValue(v)) = s.value[0].value else {
            panic!("not a scalar")
        };
        assert_eq!(v, want);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
