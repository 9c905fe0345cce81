//! The pictures the CLI writes, decoded with the same `png` and `gif` crates that encode them.
// Each test file uses part of this module.
#![allow(dead_code)]

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// A decoded picture: 8-bit RGB rows, top to bottom.
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

fn open(p: &Path) -> BufReader<File> {
    BufReader::new(File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// The PNG at `p` (RGB or RGBA, 8 bits), as RGB.
pub fn png(p: &Path) -> Rgb {
    let mut reader = png::Decoder::new(open(p))
        .read_info()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{}", p.display());
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("{}: colour type {other:?}", p.display()),
    };
    let data = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .flat_map(|px| [px[0], px[1], px[2]])
        .collect();
    Rgb {
        width: info.width,
        height: info.height,
        data,
    }
}

/// The width and height of the GIF at `p` and how many frames it has.
pub fn gif_frames(p: &Path) -> ((u32, u32), usize) {
    let mut decoder = gif::DecodeOptions::new()
        .read_info(open(p))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let size = (u32::from(decoder.width()), u32::from(decoder.height()));
    let mut frames = 0;
    while let Some(frame) = decoder
        .read_next_frame()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    {
        assert_eq!(
            (u32::from(frame.width), u32::from(frame.height)),
            size,
            "{}: frame {frames} does not cover the picture",
            p.display()
        );
        frames += 1;
    }
    (size, frames)
}
