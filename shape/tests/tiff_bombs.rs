//! Decompression bombs against the real TIFF reader, with the memory it allocates measured by
//! this test binary's allocator: a file declaring gigabytes of pixels in a few kilobytes must be
//! refused for its declared shape, and cost no more than its headers.

use dispr_shape::hostile;
use dispr_shape::tiff_io::{self, MAX_PAGES, MAX_STACK_BYTES, Problem};
use dispr_shape::volume::{SIDE, Volume};

mod common;

use common::peak_of;

#[global_allocator]
static ALLOCATOR: common::Counting = common::Counting;

const MIB: usize = 1 << 20;

#[test]
fn bombs_are_refused_from_their_headers_in_bounded_memory() {
    // A good 64^3 volume: the yardstick of what reading a cell's input may cost.
    let v = Volume { dims: [SIDE; 3], data: vec![9u8; SIDE * SIDE * SIDE] };
    let good = tiff_io::encode_volume_u8(&v).unwrap();
    let (read, good_peak) =
        peak_of(|| tiff_io::read_volume_u8(&good, "obj/good.tif", "obj volume", [SIDE; 3]));
    assert_eq!(read.unwrap(), v);
    eprintln!("good 64^3 uint8 volume: {} KiB allocated at peak", good_peak / 1024);
    // The budget: a few times a 64^3 float32 volume (1 MiB), whatever the file declares.
    let budget = 4 * MIB;
    assert!(good_peak < budget, "reading a good volume took {good_peak} bytes");

    // The bombs: 512 and 64 pages of 4096x4096 sharing one deflate strip of zeros.
    for pages in [MAX_PAGES, 64] {
        let bomb = hostile::deflate_bomb(pages, 4096).unwrap();
        let declared = pages * 4096 * 4096;
        assert!(bomb.len() < 128 * 1024, "a {pages}-page bomb is {} bytes", bomb.len());
        eprintln!("bomb of {pages} pages: {} KB declaring {} MiB", bomb.len() / 1000, declared / MIB);
        // As a cell's obj, image and mask: refused for its shape, named, within the budget.
        for (role, want) in [("obj volume", [SIDE; 3]), ("mask", [1, SIDE, SIDE])] {
            let (result, peak) = peak_of(|| match want {
                [1, h, w] => tiff_io::read_image_u8(&bomb, "mask/bomb.tif", role, [h, w]).map(|_| ()),
                dims => tiff_io::read_volume_u8(&bomb, "obj/bomb.tif", role, dims).map(|_| ()),
            });
            let err = result.unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err.problem, Problem::WrongShape { .. }), "{msg}");
            assert!(msg.contains(&format!("{pages}x4096x4096 stack")) && msg.contains(role), "{msg}");
            eprintln!("  as {role}: refused with {} KiB allocated at peak", peak / 1024);
            assert!(peak < budget, "refusing a {pages}-page bomb as {role} allocated {peak} bytes");
        }
        // Read with no shape in mind: refused for the size it declares, as cheaply.
        let (result, peak) = peak_of(|| tiff_io::decode(&bomb, "bomb.tif"));
        let err = result.unwrap_err();
        assert!(matches!(err.problem, Problem::TooMuchData { .. }), "{err}");
        assert!(err.to_string().contains(&format!("{} MiB", MAX_STACK_BYTES / MIB)), "{err}");
        assert!(peak < budget, "decoding a {pages}-page bomb allocated {peak} bytes");
    }

    // A bomb of the right shape is no bomb: 64 pages of 64x64 on one strip decode to 256 KiB.
    let page = tiff_io::encode_image_u8(&dispr_shape::volume::Image2d {
        dims: [SIDE, SIDE],
        data: vec![3; SIDE * SIDE],
    })
    .unwrap();
    let stack = hostile::repeat_first_page(&page, SIDE).unwrap();
    let (read, peak) = peak_of(|| tiff_io::read_volume_u8(&stack, "obj/shared.tif", "obj volume", [SIDE; 3]));
    assert_eq!(read.unwrap().data, vec![3; SIDE * SIDE * SIDE]);
    assert!(peak < budget, "{peak}");
}
