//! Part 3: all five sources in one `sync`, every simulated answer 50 ms late, against each pipeline
//! alone: the wall-time ratio says whether pipelines overlap.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use ordersync_sim::damaijia::{DamaijiaSim, DamaijiaSimConfig};
use ordersync_sim::sxt::{SxtSim, SxtSimConfig};
use ordersync_sim::{
    beijing_now, Faults, MiaoyouquanSim, MiaoyouquanSimConfig, UnideskSim, UnideskSimConfig,
};

use crate::child::{measure, sync_command};
use crate::worlds;

pub fn concurrency(rt: &tokio::runtime::Runtime) {
    let slow = Faults {
        p_slow: 1.0,
        slow_ms: 50,
        seed: 3,
        ..Faults::default()
    };
    let now = beijing_now();
    let ve = worlds::veapi(rt, 3, 1000, 30, now, slow.clone());
    let myq = rt
        .block_on(MiaoyouquanSim::start(MiaoyouquanSimConfig {
            seed: 3,
            apkey: "bench".into(),
            dou_key: "bench".into(),
            orders: 3000,
            days: 30,
            now,
            faults: slow.clone(),
        }))
        .expect("miaoyouquan");
    let ud = rt
        .block_on(UnideskSim::start(UnideskSimConfig {
            seed: 3,
            app_key: "bench".into(),
            app_secret: "bench-secret".into(),
            session: None,
            orders: 600,
            days: 12,
            now,
            faults: slow.clone(),
        }))
        .expect("unidesk");
    let dmj = rt
        .block_on(DamaijiaSim::start(DamaijiaSimConfig {
            seed: 3,
            access_token: "bench".into(),
            shop_id: "20358278".into(),
            orders: 1500,
            days: 30,
            now,
            faults: slow.clone(),
        }))
        .expect("damaijia");
    let sxt = rt
        .block_on(SxtSim::start(SxtSimConfig {
            seed: 3,
            user_id: "bench".into(),
            dy_uid: "bench".into(),
            orders: 500,
            days: 30,
            now,
            faults: slow,
        }))
        .expect("sxt");
    let day = |d: i64| {
        (now - ChronoDuration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    let pipelines = [
        ("veapi", format!("name = \"veapi\"\nsource = \"veapi\"\nendpoint = \"{}\"\nstart = \"{}\"\npage_size = 50\n[pipeline.auth]\nvekey = \"bench\"\n", ve.endpoint(), day(31))),
        ("miaoyouquan", format!("name = \"miaoyouquan\"\nsource = \"miaoyouquan\"\nendpoint = \"{}\"\nstart = \"{}\"\npage_size = 200\n[pipeline.auth]\napkey = \"bench\"\ndou_key = \"bench\"\n", myq.endpoint(), day(31))),
        ("unidesk", format!("name = \"unidesk\"\nsource = \"unidesk\"\nendpoint = \"{}\"\nstart = \"{}\"\n[pipeline.auth]\napp_key = \"bench\"\napp_secret = \"bench-secret\"\n", ud.endpoint(), day(13))),
        ("damaijia", format!("name = \"damaijia\"\nsource = \"damaijia\"\nendpoint = \"{}\"\nstart = \"{}\"\npage_size = 100\n[pipeline.auth]\naccess_token = \"bench\"\nshop_id = \"20358278\"\n", dmj.endpoint(), day(31))),
        ("sxt", format!("name = \"sxt\"\nsource = \"sxt\"\nendpoint = \"{}\"\nstart = \"{}\"\n[pipeline.auth]\nuser_id = \"bench\"\ndy_uid = \"bench\"\n", sxt.endpoint(), day(31))),
    ];
    let run = |chosen: &[&(&str, String)]| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("pipelines.toml");
        let mut text = format!(
            "[database]\npath = \"{}\"\n[defaults]\nsettle_lag = \"1s\"\n",
            dir.path().join("bench.db").display()
        );
        for (_, p) in chosen {
            text.push_str("[[pipeline]]\n");
            text.push_str(p);
        }
        std::fs::write(&config, text).expect("config");
        measure(sync_command(&config))
    };
    println!("| run | wall s |");
    println!("|---|---:|");
    let mut slowest = Duration::ZERO;
    for p in &pipelines {
        let m = run(&[p]);
        println!("| {} alone | {:.2} |", p.0, m.wall.as_secs_f64());
        slowest = slowest.max(m.wall);
    }
    let all: Vec<&(&str, String)> = pipelines.iter().collect();
    let m = run(&all);
    println!("| all five in one sync | {:.2} |", m.wall.as_secs_f64());
    println!(
        "\nall five / slowest single = {:.2}",
        m.wall.as_secs_f64() / slowest.as_secs_f64()
    );
}
