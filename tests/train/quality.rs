//! What makes a model worth deploying, through the real `train` binary and libtorch: the default
//! recipe learns from a few hundred photos in a few epochs, the threshold is chosen for whole
//! profiles under the daemon's any-photo rule (photo- and profile-level figures in the report), and
//! a model that learnt nothing ends with a warning that says what to try. The full-size measurement
//! on real photos is `cargo bench -p swipebot-train --bench quality`.

use std::path::Path;
use std::process::{Command, Output};

use swipebot_train::outputs::Outputs;

use crate::common;

fn train(args: &[&str]) -> Output {
    let out = Command::new(common::paths::bin("train")).args(args).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn report(model: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(Outputs::for_model(model).report).unwrap()).unwrap()
}

/// The case where the original recipe learnt nothing (254 training photos, 8 epochs): the default
/// recipe beats chance clearly, the threshold is the one for profiles of `--photos-per-profile`
/// photos, and every epoch line says its seconds and the time left.
#[test]
fn the_default_recipe_learns_a_few_hundred_photos_and_thresholds_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    swipebot_core::synth::write_dataset(&data, 150, 64, 21).unwrap();
    let model = dir.path().join("model.onnx");
    let out = train(&[
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--input-size",
        "64",
        "--grayscale",
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--photos-per-profile",
        "3",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recipe default"), "{err}");
    let epoch_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert!(!epoch_lines.is_empty());
    for line in &epoch_lines {
        assert!(line.contains(" s/epoch, ETA "), "{line}");
    }
    assert!(
        epoch_lines.last().unwrap().contains("ETA 0s") || err.contains("--patience"),
        "{err}"
    );

    let r = report(&model);
    assert_eq!(r["dataset"]["train"], 254);
    let accuracy = r["best_epoch"]["val"]["accuracy"].as_f64().unwrap();
    let auc = r["threshold"]["roc_auc"].as_f64().unwrap();
    assert!(accuracy >= 0.8 && auc >= 0.9, "accuracy {accuracy}, ROC AUC {auc}");
    assert_eq!(r["warnings"], serde_json::json!([]), "{}", r["warnings"]);
    assert_eq!(r["settings"]["recipe"], "default");
    assert_eq!(r["settings"]["augment"], "crop-mirror");
    assert_eq!(r["settings"]["norm"], "batch");

    let th = &r["threshold"];
    assert_eq!(th["chosen_by"]["policy"], "max_profile_like_f1");
    let profile = &th["profile"];
    assert_eq!(profile["photos_per_profile"], 3.0);
    assert_eq!(profile["sizes_from"], "--photos-per-profile 3");
    for level in [&th["photo"], profile] {
        for key in ["accuracy", "precision", "recall", "f1"] {
            let v = level[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} {v}");
        }
    }
    assert!(profile["f1"].as_f64().unwrap() >= 0.8, "{profile}");
    assert_eq!(th["photo"]["accuracy"], th["accuracy"]);
}

/// Photos that say nothing about their class (the same photo in both folders): the model cannot beat
/// chance, and the run says so, in the report and on stderr, with what to try. The profile sizes
/// come from a recorded-profiles folder.
#[test]
fn a_model_no_better_than_chance_ends_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let photo = swipebot_core::synth::jpeg(&swipebot_core::synth::photo(true, 48, 48, 3), 90);
    for class in ["like", "nope"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..20 {
            std::fs::write(data.join(class).join(format!("{i}.jpg")), &photo).unwrap();
        }
    }
    let recorded = dir.path().join("recorded");
    for (i, photos) in [2, 2, 5].iter().enumerate() {
        let folder = recorded.join(format!("{i:04}"));
        std::fs::create_dir_all(&folder).unwrap();
        let names: Vec<String> = (0..*photos).map(|k| format!("{k}.jpg")).collect();
        let json = serde_json::json!({"id": format!("p{i}"), "photos": names});
        std::fs::write(folder.join("profile.json"), json.to_string()).unwrap();
    }
    let model = dir.path().join("model.onnx");
    let out = train(&[
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--input-size",
        "32",
        "--grayscale",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--profiles",
        s(&recorded),
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: the model is no better than chance"), "{err}");
    let r = report(&model);
    let warnings = r["warnings"].as_array().unwrap();
    // Identical photos score alike: a ROC AUC of 0.5 (ties count half).
    assert!(
        warnings[0].as_str().unwrap().contains("no better than chance"),
        "{warnings:?}"
    );
    for w in warnings {
        let w = w.as_str().unwrap();
        assert!(
            w.contains("--epochs") && w.contains("more photos") && w.contains("--lr"),
            "{w}"
        );
    }
    let profile = &r["threshold"]["profile"];
    assert_eq!(profile["sizes_from"], s(&recorded));
    assert!(
        (profile["photos_per_profile"].as_f64().unwrap() - 3.0).abs() < 1e-9,
        "{profile}"
    );
}
