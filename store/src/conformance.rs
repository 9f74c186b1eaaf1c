//! One test body for every backend: what a [`Store`] promises, checked against a real store.
//! The local-folder variant runs in this crate's unit tests; the S3 variant runs against a
//! real S3-compatible server in the end-to-end tests (`tests/tests/store_s3.rs`), which enable
//! the `conformance` feature. The functions panic on the first broken promise.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::{ErrorKind, Store};

/// Runs every check on `store`, which must be empty (a fresh folder or a fresh unique prefix).
pub async fn check_store(store: &Store) {
    missing_objects(store).await;
    put_get_overwrite(store).await;
    get_at_most_refuses_larger_objects(store).await;
    put_if_absent_keeps_the_first(store).await;
    list_by_prefix(store).await;
    list_follows_pages(store).await;
    delete(store).await;
    invalid_keys_are_refused(store).await;
}

async fn missing_objects(store: &Store) {
    let err = store.get("missing/x.json").await.expect_err("get of a missing key must fail");
    assert!(err.is_not_found(), "a missing key is not-found: {err}");
    assert!(!err.is_retriable(), "a missing key is not worth retrying: {err}");
    assert!(err.to_string().contains(&store.uri_of("missing/x.json")), "the message names the object: {err}");
    assert_eq!(store.get_opt("missing/x.json").await.unwrap(), None);
    assert!(!store.exists("missing/x.json").await.unwrap());
    assert_eq!(store.list("missing/").await.unwrap(), Vec::<String>::new());
}

async fn put_get_overwrite(store: &Store) {
    // Larger than one network buffer and than a volume TIFF (1 MiB), and not all one byte.
    let big: Bytes = (0..3_000_017u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    store.put("put/big.bin", big.clone()).await.unwrap();
    assert_eq!(store.get("put/big.bin").await.unwrap(), big);
    assert!(store.exists("put/big.bin").await.unwrap());

    store.put("put/empty", Bytes::new()).await.unwrap();
    assert_eq!(store.get_opt("put/empty").await.unwrap(), Some(Bytes::new()));

    store.put("put/big.bin", Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(store.get("put/big.bin").await.unwrap(), Bytes::from_static(b"second"));
}

/// A reader that bounds what it holds gets objects up to the bound and an error past it, never
/// the bytes.
async fn get_at_most_refuses_larger_objects(store: &Store) {
    let data: Bytes = (0..100_000u32).map(|i| i as u8).collect();
    store.put("bounded/x.tif", data.clone()).await.unwrap();
    assert_eq!(store.get_at_most("bounded/x.tif", 100_000).await.unwrap(), data);
    let err = store.get_at_most("bounded/x.tif", 99_999).await.expect_err("one byte over the bound");
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(!err.is_retriable(), "a file too large stays too large: {err}");
    let msg = err.to_string();
    assert!(msg.contains(&store.uri_of("bounded/x.tif")) && msg.contains("99999 bytes"), "{msg}");
    let missing = store.get_at_most("bounded/missing.tif", 10).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(store.get_opt_at_most("bounded/missing.tif", 10).await.unwrap(), None);
}

async fn put_if_absent_keeps_the_first(store: &Store) {
    assert!(store.put_if_absent("done/c1.json", Bytes::from_static(b"first")).await.unwrap());
    assert!(!store.put_if_absent("done/c1.json", Bytes::from_static(b"second")).await.unwrap());
    assert_eq!(store.get("done/c1.json").await.unwrap(), Bytes::from_static(b"first"));
}

async fn list_by_prefix(store: &Store) {
    for key in ["ls/image/A_1.tif", "ls/image/A_2.tif", "ls/image/B_1.tif", "ls/image.csv", "ls/mask/A_1.tif"]
    {
        store.put(key, Bytes::from(key.to_owned())).await.unwrap();
    }
    assert_eq!(
        store.list("ls/image/").await.unwrap(),
        ["ls/image/A_1.tif", "ls/image/A_2.tif", "ls/image/B_1.tif"]
    );
    assert_eq!(store.list("ls/image/A_").await.unwrap(), ["ls/image/A_1.tif", "ls/image/A_2.tif"]);
    assert_eq!(
        store.list("ls/im").await.unwrap(),
        ["ls/image.csv", "ls/image/A_1.tif", "ls/image/A_2.tif", "ls/image/B_1.tif"],
        "a partial name lists files and folders that start with it, in byte order"
    );
    let everything = store.list("").await.unwrap();
    assert!(
        everything.contains(&"ls/mask/A_1.tif".to_owned()) && everything.contains(&"done/c1.json".to_owned())
    );
    assert!(everything.is_sorted(), "list is sorted: {everything:?}");
}

/// More keys than S3 returns in one page (1000), so the listing must follow continuation tokens.
async fn list_follows_pages(store: &Store) {
    const N: usize = 1003;
    let keys: Vec<String> = (0..N).map(|i| format!("many/{i:05}.json")).collect();
    futures::stream::iter(keys.iter().map(|key| store.put(key, Bytes::from_static(b"{}"))))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    assert_eq!(store.list("many/").await.unwrap(), keys);
}

async fn delete(store: &Store) {
    store.put("del/x", Bytes::from_static(b"x")).await.unwrap();
    store.delete("del/x").await.unwrap();
    assert!(!store.exists("del/x").await.unwrap());
    assert_eq!(store.list("del/").await.unwrap(), Vec::<String>::new());
    store.delete("del/x").await.expect("deleting a missing object succeeds");
}

async fn invalid_keys_are_refused(store: &Store) {
    for key in ["../escape", "/abs", "a//b", "a/./b", "", "dir/"] {
        let err = store.put(key, Bytes::from_static(b"x")).await.expect_err("an invalid key must be refused");
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key:?}: {err}");
        assert!(err.to_string().contains(&format!("{key:?}")), "the message names the key: {err}");
        assert_eq!(store.get(key).await.unwrap_err().kind(), ErrorKind::InvalidKey);
    }
    assert_eq!(store.list("../").await.unwrap_err().kind(), ErrorKind::InvalidKey);
}
