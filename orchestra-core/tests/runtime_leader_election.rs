//! Leader election over a Lease: one of two candidates acts; when the leader cannot renew its lease
//! the other takes over within the lease duration; never both at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use orchestra_core::api::{Admission, AdmissionRequest, Client};
use orchestra_core::clock::TokioClock;
use orchestra_core::resource::DynamicObject;
use orchestra_core::runtime::leader_election::{LeaderElectionConfig, LeaderElector};
use orchestra_core::status::StatusError;
use orchestra_core::store::MemoryStore;

/// Refuses lease writes by one holder once cut off: the leader's keep-alive dies, as when its
/// process stalls or loses the network, while its work would go on.
#[derive(Debug)]
struct CutOff {
    holder: &'static str,
    active: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Admission for CutOff {
    fn name(&self) -> &str {
        "CutOff"
    }

    async fn validate(
        &self,
        request: &AdmissionRequest<'_>,
        object: &DynamicObject,
    ) -> Result<(), StatusError> {
        let holder = object
            .data
            .pointer("/spec/holderIdentity")
            .and_then(|h| h.as_str());
        if self.active.load(Ordering::SeqCst)
            && request.resource.kind == "Lease"
            && holder == Some(self.holder)
        {
            return Err(StatusError::forbidden(
                request.resource,
                request.name,
                "cut off",
            ));
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn one_leader_and_a_takeover_within_the_lease_duration() {
    let cut_off = Arc::new(AtomicBool::new(false));
    let client = Client::builder(MemoryStore::new())
        .clock(TokioClock::starting_at(
            "2026-11-26T00:00:00Z".parse().unwrap(),
        ))
        .admission(CutOff {
            holder: "a",
            active: Arc::clone(&cut_off),
        })
        .build();
    client.bootstrap().await.unwrap();

    let acting = Arc::new(AtomicUsize::new(0));
    let most_acting = Arc::new(AtomicUsize::new(0));
    let acted_by = Arc::new(std::sync::Mutex::new(Vec::<(
        &'static str,
        tokio::time::Instant,
    )>::new()));
    let candidate = |identity: &'static str| {
        let config = LeaderElectionConfig::new("kube-system", "controller", identity);
        let elector = LeaderElector::new(client.clone(), config).unwrap();
        let acting = Arc::clone(&acting);
        let most_acting = Arc::clone(&most_acting);
        let acted_by = Arc::clone(&acted_by);
        tokio::spawn(async move {
            loop {
                let work = async {
                    let now = acting.fetch_add(1, Ordering::SeqCst) + 1;
                    most_acting.fetch_max(now, Ordering::SeqCst);
                    acted_by
                        .lock()
                        .unwrap()
                        .push((identity, tokio::time::Instant::now()));
                    // Act until told otherwise; the guard below counts the end.
                    struct Stop<'a>(&'a AtomicUsize);
                    impl Drop for Stop<'_> {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _stop = Stop(&acting);
                    std::future::pending::<()>().await;
                };
                let _ = elector.run(work).await;
            }
        })
    };
    let a = candidate("a");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = candidate("b");

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(acting.load(Ordering::SeqCst), 1);
    assert_eq!(
        acted_by.lock().unwrap().as_slice().first().map(|x| x.0),
        Some("a")
    );

    // a's keep-alive dies.
    let cut = tokio::time::Instant::now();
    cut_off.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(40)).await;
    let acted = acted_by.lock().unwrap().clone();
    let takeover = acted
        .iter()
        .find(|(who, _)| *who == "b")
        .expect("b takes over")
        .1;
    eprintln!("b took over {:?} after a's keep-alive died", takeover - cut);
    assert!(
        takeover - cut <= Duration::from_secs(15) + Duration::from_secs(2) + Duration::from_secs(2),
        "b took over after {:?}",
        takeover - cut
    );
    assert_eq!(
        most_acting.load(Ordering::SeqCst),
        1,
        "never two leaders at once"
    );
    assert_eq!(acting.load(Ordering::SeqCst), 1);
    a.abort();
    b.abort();
}
